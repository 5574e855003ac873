"""Train INTERNet: ``python -m training.train --config CONFIG --out DIR [--max-steps N] [--temporal SCHEME]
[--vgg-weights PATH] [--resume] [--set key=value ...]``, single-process or under ``torchrun``.

``training_loop`` is one readable function in sections (setup, resume, loop, snapshot), as in NVlabs
stylegan3 / edm; the losses live in ``training/objective.py``, checkpoints in ``training/checkpointing.py``.

Per step: one generator update (Eq 1: L_frame of Eq 7 + lambda_reg L_reg of Eq 3/4), then one
discriminator update (LSGAN), each with Adam (betas 0.5/0.999, lr 2e-4: pix2pixHD/FOMM practice, the paper
gives no numbers), optional bf16/fp16 autocast, gradient clipping, and a shared (all-rank) finiteness check:
a step with a NaN/inf loss or gradient is skipped and counted, and ``max_bad_steps`` in a row stop the run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import logging
import random
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset

from internet.config import ModelConfig, from_dict, to_dict
from internet.errors import CheckpointError, ConfigError, InputError
from internet.model import INTERNet
from training import distributed
from training.checkpointing import (
    Progress,
    Trainables,
    capture_rng,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    warm_start,
)
from training.config import ExperimentConfig, experiment_to_dict, load_experiment, with_overrides
from training.data import VideoSample, collate_samples
from training.discriminator import MultiScaleDiscriminator
from training.distributed import ResumableSampler
from training.objective import Objective

log = logging.getLogger("training")


class TrainingError(RuntimeError):
    """The run cannot continue (e.g. repeated non-finite losses); the message says why and what to try."""


@dataclass
class StepLog:
    """Scalars logged at one step (also returned to callers such as tests)."""

    step: int
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a finished ``training_loop`` reports."""

    progress: Progress
    trainables: Trainables  # this rank's networks, optimizers and scalers, as trained
    final_dir: Path | None
    checkpoint: Path | None
    history: list[StepLog]
    seconds_per_step: float
    peak_memory_mb: float


# --------------------------------------------------------------------------- small helpers


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, epoch, rank, step...), stable across runs and platforms."""
    digest = hashlib.sha256(",".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None for fp32; bf16 for ``auto`` on CUDA devices that support it."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def to_device(batch, device: torch.device):
    """Move the tensor fields of a batch dataclass to ``device`` (non_blocking on CUDA)."""
    moved = {}
    for name in batch.__dataclass_fields__:
        value = getattr(batch, name)
        moved[name] = value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
    return type(batch)(**moved)


def peak_memory_mb(device: torch.device) -> float:
    """Peak resident memory of this process (CPU) or peak allocated CUDA memory, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def build_dataset(config: ExperimentConfig) -> Dataset:
    """The training split named by ``config.data`` at the model's image size."""
    from training import data  # imported late: only needed when no dataset is passed in

    d = config.data
    if not d.root:
        raise ConfigError("data.root is empty: set it in the config or with --set data.root=PATH")
    root = Path(d.root)
    if not root.is_dir():
        raise InputError(f"data.root {root} is not a folder")
    size = config.model.image_size
    seed = config.train.seed
    if d.kind == "synthrunway":
        return data.SynthRunwayDataset(root, size=size, split="train", min_offset=d.min_offset, seed=seed)
    return data.VideoFolderDataset(
        root,
        size=size,
        list_file=d.list_file or None,
        fit=d.fit,
        min_offset=d.min_offset,
        flow_cache=d.flow_cache or None,
        dis_preset=d.dis_preset,
        seed=seed,
    )


class RepeatedDataset(Dataset):
    """``repeats`` passes over a dataset per epoch (FOMM's ``num_repeats``).

    Index i goes to the base dataset unchanged: ``training.data`` datasets take any index (clip i mod N,
    with randomness seeded by (seed, epoch, i)), so each pass draws a different driving frame per clip.
    """

    def __init__(self, base: Dataset, repeats: int) -> None:
        self.base, self.repeats = base, repeats

    def __len__(self) -> int:
        return len(self.base) * self.repeats  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> VideoSample:
        return self.base[index]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)


def _update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def learning_rate(base: float, step: int, milestones: tuple[int, ...], gamma: float) -> float:
    """Step-wise decay (FOMM's MultiStepLR): ``base * gamma ** (milestones passed by step)``; a function of the
    step alone, so a resumed run gets the same rates without scheduler state."""
    return base * gamma ** sum(step >= m for m in milestones)


def _set_learning_rates(trainables: Trainables, t, step: int) -> None:
    rates = ((trainables.generator_optimizer, t.lr), (trainables.discriminator_optimizer, t.lr_discriminator or t.lr))
    for optimizer, base in rates:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(base, step, t.lr_milestones, t.lr_gamma) * group.get("lr_scale", 1.0)


def _generator_groups(generator: INTERNet, t) -> list[dict]:
    """The generator's parameters; an affine background term in a group of its own at ``train.lr_background``."""
    if generator.background is None:
        return [{"params": list(generator.parameters())}]
    background = {id(p) for p in generator.background.parameters()}
    rest = [p for p in generator.parameters() if id(p) not in background]
    scale = (t.lr_background or t.lr) / t.lr
    return [{"params": rest}, {"params": list(generator.background.parameters()), "lr_scale": scale}]


def _buffers(module: nn.Module) -> list[torch.Tensor]:
    """Copies of a module's buffers (BatchNorm running statistics), to undo a skipped step's forward passes."""
    return [b.detach().clone() for b in module.buffers()]


def _restore_buffers(module: nn.Module, saved: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for buffer, value in zip(module.buffers(), saved):
            buffer.copy_(value)


def _optimizer_step(
    loss: torch.Tensor,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    grad_clip: float,
) -> tuple[bool, float, float]:
    """Backward, unscale, clip, and step only if loss and gradients are finite on every rank.

    Returns (stepped, mean loss over ranks, grad norm). Every rank always runs the backward (DDP needs it).
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    stats = distributed.all_reduce_mean(torch.stack([loss.detach().float(), norm.detach().float()]))
    loss_value, norm_value = stats.tolist()
    finite_loss = np.isfinite(loss_value)
    # With fp16 the scaler skips steps with overflowing gradients itself; that is not a "bad" step.
    ok = finite_loss and (scaler.is_enabled() or np.isfinite(norm_value))
    if ok:
        scaler.step(optimizer)
    scaler.update()
    return ok, loss_value, norm_value


# --------------------------------------------------------------------------- the loop


def training_loop(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    dataset: Dataset | None = None,
) -> TrainResult:
    """Train G and D for ``config.train.max_steps`` steps (or ``epochs``); see the module docstring.

    ``dataset`` (yielding ``training.data.VideoSample``) overrides ``config.data`` (tests use this).
    """
    # ------------------------------------------------------------------ setup
    t = config.train
    ctx = distributed.init(t.device)
    out = Path(out_dir)
    ckpt_root = out / "checkpoints"
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _setup_logging(out)
    if not resume and latest_checkpoint(ckpt_root) is not None:
        raise ConfigError(
            f"{out} already holds checkpoints: pass --resume to continue, or choose another --out"
        )
    if t.batch_size % ctx.world_size:
        raise ConfigError(f"train.batch_size {t.batch_size} is not divisible by the {ctx.world_size} ranks")
    per_rank = t.batch_size // ctx.world_size
    device = ctx.device
    amp_dtype = autocast_dtype(t.precision, device)

    torch.manual_seed(t.seed)  # identical initial weights on every rank
    generator = INTERNet(config.model).to(device)
    discriminator = MultiScaleDiscriminator(config.model.discriminator).to(device)
    ema = copy.deepcopy(generator).eval().requires_grad_(False) if t.ema_decay > 0 else None
    betas = t.betas
    trainables = Trainables(
        generator=generator,
        discriminator=discriminator,
        generator_optimizer=torch.optim.Adam(_generator_groups(generator, t), lr=t.lr, betas=betas),
        discriminator_optimizer=torch.optim.Adam(
            discriminator.parameters(), lr=t.lr_discriminator or t.lr, betas=betas
        ),
        generator_scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        discriminator_scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        generator_ema=ema,
    )
    objective = Objective.build(config.loss, device)

    dataset = RepeatedDataset(dataset if dataset is not None else build_dataset(config), config.data.repeats)
    sampler = ResumableSampler(dataset, ctx.world_size, ctx.rank, seed=t.seed, batch_size=per_rank)
    steps_per_epoch = sampler.batches_per_epoch()
    if steps_per_epoch == 0:
        raise InputError(f"the dataset has {len(dataset)} samples, fewer than one batch of {t.batch_size}")  # type: ignore[arg-type]
    max_steps = t.max_steps or t.epochs * steps_per_epoch

    # ------------------------------------------------------------------ resume
    progress = Progress()
    if resume and (found := latest_checkpoint(ckpt_root)) is not None:
        restored = load_checkpoint(found, trainables)
        _check_resumable(restored.config, config)
        progress = restored.progress
        states = restored.rng_states
        if len(states) != ctx.world_size:
            log.warning(
                "resuming with %d ranks from a %d-rank checkpoint: not bit-exact", ctx.world_size, len(states)
            )
        restore_rng(states[ctx.rank % len(states)], device)
        if ctx.is_main:
            where = f"step {progress.step} (epoch {progress.epoch}, batch {progress.batch_in_epoch})"
            log.info(f"resumed from {found} at {where}")
    else:
        if resume and ctx.is_main:
            log.info(f"--resume: no checkpoint in {ckpt_root} yet, starting from scratch")
        if t.init:
            fresh = warm_start(Path(t.init), trainables)
            if ema is not None:
                ema.load_state_dict(generator.state_dict())
            if ctx.is_main:
                log.info(f"weights from {t.init}; kept their initialisation: {', '.join(fresh) or 'nothing'}")
        torch.manual_seed(derive_seed(t.seed, ctx.rank))
        np.random.seed(derive_seed(t.seed, ctx.rank) % 2**32)
        random.seed(derive_seed(t.seed, ctx.rank))

    g_train = distributed.wrap(generator, ctx)
    d_train = distributed.wrap(discriminator, ctx)
    if ctx.is_main:
        (out / "config.yaml").write_text(
            yaml.safe_dump(experiment_to_dict(config), sort_keys=False), encoding="utf-8"
        )
        precision = "fp32" if amp_dtype is None else f"{amp_dtype} autocast"
        log.info(
            f"INTERNet training: {config.model.name}, {ctx.world_size} rank(s) on {device},"
            f" batch {t.batch_size} ({per_rank} per rank), {max_steps} steps ({steps_per_epoch} per epoch),"
            f" {precision}"
        )
        for line in objective.describe():
            log.info(line)
    writer = _tensorboard(out) if ctx.is_main else None
    bar = _progress_bar(ctx.is_main and t.progress, progress.step, max_steps)

    # ------------------------------------------------------------------ loop
    history: list[StepLog] = []
    last_checkpoint: Path | None = None
    tick_time, tick_step = time.perf_counter(), progress.step
    start_time, start_step = tick_time, progress.step
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    )
    background_detector = generator.background.detector if generator.background is not None else None
    while progress.step < max_steps:
        batches = _epoch_batches(dataset, sampler, progress, per_rank, t.seed, ctx, config.data.num_workers)
        for batch in batches:
            batch = to_device(batch, device)
            _set_learning_rates(trainables, t, progress.step)
            rng = torch.Generator().manual_seed(derive_seed(t.seed, progress.step, ctx.rank))

            # Generator step (the discriminator is frozen and used unwrapped: it gets no gradients here).
            # BatchNorm statistics change in the forward passes; a skipped step puts them back.
            saved_buffers = _buffers(generator), _buffers(discriminator)
            discriminator.requires_grad_(False)
            with autocast:
                g_step = objective.generator_step(
                    g_train, generator.detect, discriminator, batch, rng, background_detector=background_detector
                )
            g_opt, g_scaler = trainables.generator_optimizer, trainables.generator_scaler
            g_ok, g_loss, g_norm = _optimizer_step(
                g_step.losses.total, generator, g_opt, g_scaler, t.grad_clip
            )

            # Discriminator step on real frames and the (detached) generated ones; skipped with a bad G step.
            discriminator.requires_grad_(True)
            d_ok, d_loss, d_norm = False, float("nan"), float("nan")
            d_losses = None
            if g_ok:
                with autocast:
                    d_losses = objective.discriminator_step(d_train, batch.driving, g_step.output.prediction)
                d_opt, d_scaler = trainables.discriminator_optimizer, trainables.discriminator_scaler
                d_ok, d_loss, d_norm = _optimizer_step(
                    d_losses.total, discriminator, d_opt, d_scaler, t.grad_clip
                )

            progress.step += 1
            progress.batch_in_epoch += 1
            if not (g_ok and d_ok):
                _restore_buffers(generator, saved_buffers[0])
                _restore_buffers(discriminator, saved_buffers[1])
            distributed.average_buffers(generator)
            if g_ok and d_ok:
                progress.bad_steps = 0
                if ema is not None:
                    _update_ema(ema, generator, t.ema_decay)
            else:
                progress.bad_steps += 1
                progress.skipped_steps += 1
                if ctx.is_main:
                    which = "generator" if not g_ok else "discriminator"
                    log.warning("step %d skipped: non-finite %s loss or gradient", progress.step, which)
                if progress.bad_steps >= t.max_bad_steps:
                    raise TrainingError(
                        f"{progress.bad_steps} steps in a row had NaN/inf losses or gradients (at step"
                        f" {progress.step}); stopping. Lower train.lr, keep train.grad_clip on, or use"
                        f" train.precision=fp32; the last good checkpoint is in {ckpt_root}"
                    )
            if bar is not None:
                bar.update(1)
                bar.set_postfix(G=f"{g_loss:.3f}", D=f"{d_loss:.3f}", refresh=False)

            # Scalars, speed and image grids (rank 0).
            if ctx.is_main and (progress.step % t.log_every == 0 or progress.step == max_steps):
                now = time.perf_counter()
                rate = (progress.step - tick_step) / max(now - tick_time, 1e-9)
                tick_time, tick_step = now, progress.step
                values = {f"G/{k}": v for k, v in g_step.losses.scalars()}
                if d_losses is not None:
                    values.update({f"D/{k}": v for k, v in d_losses.scalars()})
                values["grad_norm/G"], values["grad_norm/D"] = g_norm, d_norm
                values["lr/G"] = trainables.generator_optimizer.param_groups[0]["lr"]
                values["lr/D"] = trainables.discriminator_optimizer.param_groups[0]["lr"]
                values["speed/steps_per_s"], values["speed/samples_per_s"] = rate, rate * t.batch_size
                values["speed/peak_memory_mb"] = peak_memory_mb(device)
                values["skipped_steps"] = progress.skipped_steps
                history.append(StepLog(progress.step, values))
                if writer is not None:
                    for key, value in values.items():
                        writer.add_scalar(key, value, progress.step)
                log.info("step %d  %s", progress.step, "  ".join(f"{k}={v:.4g}" for k, v in values.items()))
            if writer is not None and t.image_every and progress.step % t.image_every == 0 and g_ok:
                from training.visualize import training_grid

                writer.add_image(
                    "frames", training_grid(batch.source, batch.driving, g_step.output), progress.step
                )

            # ---------------------------------------------------------- snapshot
            if progress.step % t.checkpoint_every == 0 or progress.step == max_steps:
                last_checkpoint = _snapshot(ckpt_root, trainables, progress, config, ctx, t.keep_checkpoints)
            if progress.step >= max_steps:
                break
        else:  # the epoch ran out of batches
            progress.epoch += 1
            progress.batch_in_epoch = 0

    # ------------------------------------------------------------------ done: export the generator
    final_dir = None
    if ctx.is_main:
        final_dir = (ema or generator).save_pretrained(out / "final")
        log.info("final generator%s exported to %s", " (EMA)" if ema is not None else "", final_dir)
    elapsed = time.perf_counter() - start_time
    done = max(progress.step - start_step, 1)
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    distributed.barrier()
    return TrainResult(
        progress, trainables, final_dir, last_checkpoint, history, elapsed / done, peak_memory_mb(device)
    )


def _snapshot(
    root: Path, trainables: Trainables, progress: Progress, config: ExperimentConfig, ctx, keep: int
) -> Path | None:
    """Gather every rank's RNG state; rank 0 writes the checkpoint; everyone waits for it."""
    states = distributed.all_gather_objects(capture_rng(ctx.device))
    path = None
    if ctx.is_main:
        path = save_checkpoint(root, trainables, progress, states, experiment_to_dict(config), keep)
        log.info("checkpoint %s", path)
    distributed.barrier()
    return path


def _epoch_batches(dataset, sampler, progress, per_rank, seed, ctx, num_workers) -> Iterator:
    """Batches of ``progress.epoch`` from ``progress.batch_in_epoch`` on, in an order set by (seed, epoch).

    The loader has its own generator (the global RNG is never touched by creating it), so a resumed run
    sees exactly the batches the uninterrupted run would have seen.
    """
    sampler.set_position(progress.epoch, progress.batch_in_epoch)
    if hasattr(dataset, "set_epoch"):  # per-sample randomness is seeded by (seed, epoch, index)
        dataset.set_epoch(progress.epoch)
    loader = DataLoader(
        dataset,
        batch_size=per_rank,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_samples,
        drop_last=True,
        pin_memory=ctx.device.type == "cuda",
        generator=torch.Generator().manual_seed(derive_seed(seed, progress.epoch, ctx.rank)),
        persistent_workers=False,
    )
    return iter(loader)


def _check_resumable(saved: dict, config: ExperimentConfig) -> None:
    """The model must match the checkpoint; other differences are logged (max_steps may change)."""
    current = experiment_to_dict(config)
    try:  # through the parser, so fields removed since (with their "off" value) do not count as a change
        saved_model = to_dict(from_dict(ModelConfig, saved.get("model") or {}, "checkpoint model"))
    except ConfigError:
        saved_model = saved.get("model")
    if saved_model != current["model"]:
        raise CheckpointError("the checkpoint was trained with a different model config; cannot resume")
    for section in ("data", "loss", "train"):
        for key, value in current[section].items():
            old = saved.get(section, {}).get(key)
            if old != value and key not in ("max_steps", "progress", "log_every", "image_every"):
                log.warning("resuming with %s.%s = %r (checkpoint had %r)", section, key, value, old)


def _setup_logging(out: Path) -> None:
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    file_handler = logging.FileHandler(out / "log.txt", encoding="utf-8")
    file_handler.setFormatter(fmt)
    log.addHandler(file_handler)
    log.propagate = True


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is in requirements.txt, but training must not die without it
        log.warning("tensorboard is not installed: no TensorBoard logs")
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def _progress_bar(enabled: bool, initial: int, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="YAML config, e.g. training/configs/synthrunway-128.yaml")
    p.add_argument("--out", required=True, help="output folder: checkpoints/, final/, tensorboard/, log.txt")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (train.max_steps)")
    p.add_argument(
        "--temporal", choices=["none", "extrinsic", "intrinsic"], help="temporal scheme (loss.temporal)"
    )
    p.add_argument("--vgg-weights", help="VGG-19 weights file (torchvision layout, .pth or .safetensors)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the last complete checkpoint in --out"
    )
    p.add_argument("--init", help="start from the weights of a checkpoint or exported model folder (train.init)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set train.lr=1e-4 (repeatable)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        config = load_experiment(args.config, args.overrides)
        shortcuts = []
        if args.max_steps is not None:
            shortcuts.append(f"train.max_steps={args.max_steps}")
        if args.temporal is not None:
            shortcuts.append(f"loss.temporal={args.temporal}")
        if args.vgg_weights is not None:
            shortcuts.append(f"loss.vgg_weights={args.vgg_weights}")
        if args.init is not None:
            shortcuts.append(f"train.init={args.init}")
        config = with_overrides(config, shortcuts)
        training_loop(config, args.out, resume=args.resume)
    except (ConfigError, CheckpointError, InputError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
