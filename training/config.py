"""Typed training configuration: model preset + data + loss weights + optimisation, strictly parsed.

A config file is YAML with four sections::

    model: {preset: small-128, generator: {skip_mode: ss4x}}   # a preset, then field overrides
    data:  {kind: synthrunway, root: /data/synthrunway}
    loss:  {temporal: intrinsic, style: 100.0}
    train: {batch_size: 4, lr: 2.0e-4}

Merge order (as in dinov2): dataclass defaults -> file -> ``--set key=value`` overrides. Unknown keys and
wrong types are errors naming the offending key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from internet.config import (
    PRESETS,
    ModelConfig,
    deep_update,
    from_dict,
    merge,
    parse_overrides,
    read_mapping,
    to_dict,
)
from internet.errors import ConfigError

Temporal = Literal["none", "extrinsic", "intrinsic"]


@dataclass(frozen=True)
class DataConfig:
    """Where the training clips come from (``training/data.py``); frames are fitted to the model size."""

    kind: Literal["synthrunway", "video_folder"] = "synthrunway"
    root: str = ""  # dataset folder (SynthRunway clips, or FashionVideo .mp4 files / frame folders)
    list_file: str = ""  # video_folder: split list such as fashion_train.txt; "" = every video in root
    fit: Literal["resize", "crop", "pad"] = "resize"  # video_folder: how frames become square (paper: resize)
    flow_cache: str = ""  # video_folder: DIS flow cache (fill it first with python -m training.data)
    dis_preset: Literal["ultrafast", "fast", "medium"] = "medium"
    min_offset: int = 60  # driving frame index t > min_offset (paper: 2 s at 30 fps, t > 60)
    repeats: int = 1  # passes over the clips per epoch (FOMM's num_repeats): one sample per clip and pass
    num_workers: int = 0  # DataLoader worker processes per rank


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (Eq 1, Eq 7) and the temporal scheme (Sec 3.1-3.2).

    The paper gives no numeric weights; the defaults follow pix2pixHD / FOMM practice: adversarial 1,
    feature matching 10, perceptual 10, equivariance 10 + 10. Style and temporal weights are our choice.
    """

    temporal: Temporal = "intrinsic"  # none (a) | extrinsic, Eq 3 (b) | intrinsic, Eq 4 (c)
    adversarial: float = 1.0  # lambda_adv, LSGAN (least squares), all discriminator scales
    feature_matching: float = 10.0  # lambda_fm
    perceptual: float = 10.0  # lambda_vgg (or of the weight-free substitute when no VGG file is given)
    style: float = 100.0  # lambda_sty, Eq 8-9 (needs VGG weights; off without them)
    equivariance_value: float = 10.0  # lambda_covar, anchor term of Eq 11
    equivariance_jacobian: float = 10.0  # lambda_covar, Jacobian term of Eq 11
    temporal_weight: float = 10.0  # lambda_reg of Eq 1
    # What O_t is compared with after warping: the generated O_{t-1} (the definition, two generator
    # passes) or the real frame I_{t-1} (Eq 2-4 read literally; one pass).
    temporal_reference: Literal["previous_output", "previous_frame"] = "previous_output"
    vgg_weights: str = ""  # path to VGG-19 weights (torchvision layout, .pth or .safetensors); "" = none
    tps_sigma_affine: float = 0.05  # random transform T of Eq 10-11 (FOMM values)
    tps_sigma_tps: float = 0.005
    tps_points: int = 5


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping. Adam betas (0.5, 0.999), lr 2e-4 for G and D (pix2pixHD/FOMM;
    the paper gives no optimiser settings)."""

    seed: int = 0
    batch_size: int = 16  # global batch, split evenly across ranks
    epochs: int = 100
    max_steps: int = 0  # 0 = epochs * steps per epoch
    lr: float = 2e-4  # generator learning rate
    # Start from the weights of another run (a training checkpoint folder or an exported model folder);
    # optimizers and progress start fresh, modules the other run lacked keep their initialisation. "" = off.
    init: str = ""
    lr_discriminator: float | None = None  # None = same as lr
    lr_background: float | None = None  # lr of the affine background term (motion.background); None = lr
    betas: tuple[float, float] = (0.5, 0.999)
    # Steps at which both learning rates drop by lr_gamma (FOMM: epochs 60 and 90 of 100, x0.1); () = constant.
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    grad_clip: float = 100.0  # max global grad norm for G and D (a spike guard); 0 = off
    ema_decay: float = 0.0  # EMA of the generator weights; 0 = off
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto = bf16 autocast on CUDA if supported
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_every: int = 50  # steps between scalar logs
    image_every: int = 500  # steps between TensorBoard image grids; 0 = off
    checkpoint_every: int = 1000  # steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = 3  # keep the last K checkpoints
    max_bad_steps: int = 10  # consecutive non-finite steps before the run stops
    progress: bool = True  # tqdm progress bar on rank 0


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one training run needs; saved as ``config.yaml`` in the output folder."""

    model: ModelConfig = field(default_factory=lambda: PRESETS["tiny"]())
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        t = self.train
        if t.batch_size < 1 or t.epochs < 1 or t.max_steps < 0:
            raise ConfigError("train.batch_size and train.epochs must be >= 1 and train.max_steps >= 0")
        if t.lr <= 0 or any(r is not None and r <= 0 for r in (t.lr_discriminator, t.lr_background)):
            raise ConfigError("learning rates must be positive")
        if not 0.0 < t.lr_gamma <= 1.0 or list(t.lr_milestones) != sorted(set(t.lr_milestones)):
            raise ConfigError("train.lr_gamma must be in (0, 1] and train.lr_milestones increasing steps")
        if not 0.0 <= t.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
        if t.keep_checkpoints < 1 or t.checkpoint_every < 1 or t.log_every < 1 or t.max_bad_steps < 1:
            raise ConfigError(
                "train.keep_checkpoints, checkpoint_every, log_every, max_bad_steps must be >= 1"
            )
        if self.data.min_offset < 0 or self.data.repeats < 1 or self.data.num_workers < 0:
            raise ConfigError("data.min_offset and data.num_workers must be >= 0, data.repeats >= 1")


def load_experiment(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Defaults -> YAML file -> ``key=value`` overrides (``model.preset`` may be overridden too)."""
    data: dict[str, Any] = read_mapping(path) if path is not None else {}
    where = str(path) if path is not None else "config"
    deep_update(data, parse_overrides(overrides))
    model_data = data.pop("model", {}) or {}
    if not isinstance(model_data, dict):
        raise ConfigError(f"{where}: model must be a mapping")
    model_data = dict(model_data)
    preset = model_data.pop("preset", "tiny")
    if preset not in PRESETS:
        raise ConfigError(f"{where}: unknown model preset {preset!r}; presets: {', '.join(PRESETS)}")
    model = merge(PRESETS[preset](), model_data, f"{where}.model")
    unknown = sorted(set(data) - {"data", "loss", "train"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown section(s) {', '.join(unknown)}; allowed: model, data, loss, train"
        )
    return from_dict(ExperimentConfig, {"model": model, **data}, where)


def with_overrides(config: ExperimentConfig, overrides: list[str] | tuple[str, ...]) -> ExperimentConfig:
    """``config`` updated by ``key=value`` strings (used for the CLI shortcuts such as ``--temporal``)."""
    return merge(config, parse_overrides(overrides), "override") if overrides else config


def experiment_to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Plain nested dict (JSON/YAML-able); ``load_experiment`` of its YAML gives ``config`` back."""
    return to_dict(config)


def replace(config: ExperimentConfig, **sections: dict[str, Any]) -> ExperimentConfig:
    """Replace fields of sections, e.g. ``replace(cfg, train={"max_steps": 4})``, validated like overrides."""
    return merge(config, sections, "replace")


__all__ = [
    "DataConfig",
    "ExperimentConfig",
    "LossConfig",
    "TrainConfig",
    "experiment_to_dict",
    "load_experiment",
    "replace",
    "with_overrides",
]
