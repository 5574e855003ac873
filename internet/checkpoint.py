"""Safe weight files: safetensors only for our checkpoints (nothing is ever unpickled)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from internet.config import ModelConfig, from_dict
from internet.errors import CheckpointError, ConfigError


def save_state_dict(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype = torch.float32) -> None:
    """Atomically write a state dict as safetensors (floating tensors cast to ``dtype``)."""
    tensors = {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous().cpu() for k, v in state.items()
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning every failure into a one-line ``CheckpointError``."""
    if not path.is_file():
        raise CheckpointError(f"missing weights file {path}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc})") from None


def _check_names_and_shapes(path: Path, found: dict[str, tuple], expected: dict[str, tuple]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit this model: {len(missing)} missing and {len(unexpected)} unexpected tensors"
            f" (e.g. {(missing or unexpected)[0]})"
        )
    for name, shape in found.items():
        if shape != expected[name]:
            raise CheckpointError(f"{path}: tensor {name} has shape {shape}, expected {expected[name]}")


def check_weights_fit(config: ModelConfig, path: Path, build: Callable[[ModelConfig], nn.Module]) -> None:
    """Check the tensor names and shapes in ``path``'s header against the model ``build(config)`` makes
    (``INTERNet``), built on the meta device: nothing is allocated or read, so a config.json that does not
    match its weights (or asks for terabytes of channels) is a CheckpointError instead of an allocation
    failure."""
    if not path.is_file():
        raise CheckpointError(f"missing weights file {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            found = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc})") from None
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build(config).state_dict().items()}
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path.parent}: config.json describes a model that cannot be built ({exc})") from None
    _check_names_and_shapes(path, found, expected)


def load_state_dict(model: nn.Module, path: Path) -> None:
    """Load weights into ``model`` strictly, checking names and shapes; dtype follows the model."""
    tensors = read_tensors(path)
    expected = model.state_dict()
    _check_names_and_shapes(path, {k: tuple(v.shape) for k, v in tensors.items()},
                            {k: tuple(v.shape) for k, v in expected.items()})  # fmt: skip
    for name, tensor in tensors.items():
        want = expected[name]
        if tensor.is_floating_point() != want.is_floating_point():
            raise CheckpointError(f"{path}: tensor {name} has dtype {tensor.dtype}, expected {want.dtype}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {name} holds NaN or inf")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()}, strict=True)


def read_config(path: Path) -> ModelConfig:
    """Read ``config.json`` into a ``ModelConfig`` (unknown keys and wrong types are errors)."""
    if not path.is_file():
        raise CheckpointError(f"missing {path} (a checkpoint directory holds model.safetensors + config.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    data.setdefault("norm", "group")  # written before ModelConfig.norm existed: every block was GroupNorm
    try:
        return from_dict(ModelConfig, data, str(path))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
