"""Training checkpoints: atomic, complete, pickle-free, and exact to resume from.

A checkpoint is a folder ``DIR/checkpoints/step-XXXXXXX/`` holding

    generator.safetensors, discriminator.safetensors, [generator_ema.safetensors]   module weights
    optimizers.safetensors                                                           Adam moments and steps
    state.json    step, epoch, position in the epoch, bad-step counters, the non-tensor parts of the
                  optimizer and GradScaler states, every rank's RNG states (python, numpy, torch, CUDA),
                  and the experiment config

It is written into ``.tmp-step-XXXXXXX/`` (every file fsynced), then renamed: a folder named ``step-*``
is always complete, and a process killed at any moment (SIGKILL included) leaves the previous checkpoint
untouched. Older checkpoints beyond the last K are renamed away before they are deleted.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from internet.checkpoint import load_state_dict, read_tensors
from internet.errors import CheckpointError

FORMAT = "internet-train-1"
_NAME = re.compile(r"^step-(\d{7,})$")


@dataclass
class Progress:
    """Where the run is: optimizer steps taken and the data position (epoch, batches done in it)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    bad_steps: int = 0  # consecutive non-finite steps
    skipped_steps: int = 0  # all skipped steps so far


@dataclass
class Trainables:
    """Everything with state that a checkpoint must hold (besides RNGs and progress)."""

    generator: nn.Module
    discriminator: nn.Module
    generator_optimizer: torch.optim.Optimizer
    discriminator_optimizer: torch.optim.Optimizer
    generator_scaler: torch.amp.GradScaler
    discriminator_scaler: torch.amp.GradScaler
    generator_ema: nn.Module | None = None

    def modules(self) -> list[tuple[str, nn.Module]]:
        pairs = [("generator", self.generator), ("discriminator", self.discriminator)]
        return pairs + ([("generator_ema", self.generator_ema)] if self.generator_ema is not None else [])

    def optimizers(self) -> list[tuple[str, torch.optim.Optimizer]]:
        return [("generator", self.generator_optimizer), ("discriminator", self.discriminator_optimizer)]

    def scalers(self) -> list[tuple[str, torch.amp.GradScaler]]:
        return [("generator", self.generator_scaler), ("discriminator", self.discriminator_scaler)]


@dataclass
class Restored:
    """What ``load_checkpoint`` returns besides filling the trainables in place."""

    path: Path
    progress: Progress
    rng_states: list[dict[str, Any]]  # one per rank of the run that wrote it
    config: dict[str, Any]


# --------------------------------------------------------------------------- RNG states


def capture_rng(device: torch.device) -> dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) RNG states as JSON-able data."""
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    out: dict[str, Any] = {
        "python": [version, list(state), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
        "cuda": _b64(torch.cuda.get_rng_state(device)) if device.type == "cuda" else None,
    }
    return out


def restore_rng(states: dict[str, Any], device: torch.device) -> None:
    """Inverse of ``capture_rng``."""
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(states["torch"]))
    if device.type == "cuda" and states.get("cuda") is not None:
        torch.cuda.set_rng_state(_unb64(states["cuda"]), device)


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


# --------------------------------------------------------------------------- nested state <-> (JSON, tensors)


def split_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested state (dicts with int/str keys, lists, tuples) by a reference.

    The tensors go to ``tensors`` under dotted keys; the rest becomes JSON-able, types preserved.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"tensor": prefix}
    if isinstance(obj, dict):
        return {"dict": [[k, split_state(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        kind = "tuple" if isinstance(obj, tuple) else "list"
        return {kind: [split_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def join_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``split_state``."""
    if isinstance(obj, dict):
        if "tensor" in obj:
            if obj["tensor"] not in tensors:
                raise CheckpointError(f"checkpoint is missing tensor {obj['tensor']}")
            return tensors[obj["tensor"]]
        if "dict" in obj:
            return {k: join_state(v, tensors) for k, v in obj["dict"]}
        if "tuple" in obj:
            return tuple(join_state(v, tensors) for v in obj["tuple"])
        if "list" in obj:
            return [join_state(v, tensors) for v in obj["list"]]
        raise CheckpointError(f"unexpected entry {sorted(obj)} in checkpoint state")
    return obj


# --------------------------------------------------------------------------- save / find / load


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:07d}"


def save_checkpoint(
    root: Path,
    trainables: Trainables,
    progress: Progress,
    rng_states: list[dict[str, Any]],
    config: dict[str, Any],
    keep: int,
) -> Path:
    """Write a complete checkpoint atomically (see the module docstring); call on rank 0 only."""
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, progress.step)
    tmp = root / f".tmp-{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, module in trainables.modules():
        state = module.state_dict()
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            shutil.rmtree(tmp)
            raise CheckpointError(f"refusing to checkpoint {name}: {bad[0]} holds NaN or inf")
        _write_tensors(tmp / f"{name}.safetensors", state)
    tensors: dict[str, torch.Tensor] = {}
    optimizers = {name: split_state(opt.state_dict(), name, tensors) for name, opt in trainables.optimizers()}
    _write_tensors(tmp / "optimizers.safetensors", tensors)
    document = {
        "format": FORMAT,
        "progress": asdict(progress),
        "optimizers": optimizers,
        "scalers": {name: split_state(s.state_dict(), name, {}) for name, s in trainables.scalers()},
        "rng": rng_states,
        "config": config,
    }
    _write_text(tmp / "state.json", json.dumps(document))
    _fsync_dir(tmp)
    if final.exists():  # an identical step written by an earlier, interrupted run
        _discard(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(root)[:-keep]:
        _discard(old)
    for stale in root.glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found) if (p / "state.json").is_file()]


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def load_checkpoint(path: Path, trainables: Trainables) -> Restored:
    """Fill ``trainables`` in place from a checkpoint folder; every problem is a one-line CheckpointError."""
    try:
        document = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path / 'state.json'}: {exc}") from None
    if document.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a training checkpoint of format {FORMAT}")
    for name, module in trainables.modules():
        load_state_dict(module, path / f"{name}.safetensors")
    tensors = read_tensors(path / "optimizers.safetensors")
    for name, opt in trainables.optimizers():
        try:
            opt.load_state_dict(join_state(document["optimizers"][name], tensors))
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: the {name} optimizer state does not fit ({exc})") from None
    for name, scaler in trainables.scalers():
        state = join_state(document["scalers"][name], {})
        if state:
            scaler.load_state_dict(state)
    known = {f.name for f in fields(Progress)}
    progress = Progress(**{k: v for k, v in document["progress"].items() if k in known})
    return Restored(path=path, progress=progress, rng_states=document["rng"], config=document["config"])


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """safetensors with dtypes preserved, fsynced."""
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(path: Path) -> None:
    """Rename away first (atomic), then delete: a kill mid-delete never leaves a half ``step-*`` folder."""
    trash = path.with_name(f".tmp-{path.name}-old")
    if trash.exists():
        shutil.rmtree(trash)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def warm_start(path: Path, trainables: Trainables) -> list[str]:
    """Start a new run from the weights of another: ``path`` is a training checkpoint folder (generator and
    discriminator) or an exported model folder (``model.safetensors``: the generator only).

    Optimizer states, progress and RNGs start fresh. Every tensor in the file must exist in this model with the
    same shape; tensors of this model that the file lacks (a module the earlier run did not have, e.g. an
    affine background term) keep their initialisation. Returns those names, and ``"discriminator"`` when
    ``path`` is an exported model (the whole discriminator then starts from its initialisation: that restart
    changes what the run learns, docs/reproduction.md section 2).
    """
    path = Path(path)
    sources = [("generator", path / "generator.safetensors"), ("discriminator", path / "discriminator.safetensors")]
    exported = not sources[0][1].is_file()
    if exported:
        sources = [("generator", path / "model.safetensors")]
    if not sources[0][1].is_file():
        raise CheckpointError(f"{path} holds neither a training checkpoint nor an exported model")
    kept: list[str] = []
    for name, file in sources:
        module: nn.Module = getattr(trainables, name)
        tensors = read_tensors(file)
        expected = module.state_dict()
        for key, tensor in tensors.items():
            if key not in expected or tuple(expected[key].shape) != tuple(tensor.shape):
                got = tuple(expected[key].shape) if key in expected else "nothing"
                raise CheckpointError(f"{file}: {key} {tuple(tensor.shape)} does not fit this model ({got})")
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise CheckpointError(f"{file}: tensor {key} holds NaN or inf")
        module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=False)
        kept += [f"{name}.{k}" for k in expected if k not in tensors]
    return [*kept, "discriminator"] if exported else kept
