"""Typed model configuration, named presets, and strict parsing of YAML/JSON files and overrides.

Merge order (as in dinov2): preset defaults -> file -> ``key=value`` overrides. Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from internet.errors import ConfigError

T = TypeVar("T")
_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


@dataclass(frozen=True)
class AnchorConfig:
    """Stage I anchor detector: a U-Net on the frame at the motion resolution (Sec 3.3)."""

    num_anchors: int = 10
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    temperature: float = 0.1
    estimate_jacobian: bool = True


@dataclass(frozen=True)
class MotionConfig:
    """Stage I dense motion network (Eq 5) with the confidence-map output layer."""

    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    heatmap_variance: float = 0.01
    # The background term T_0 of Eq 5: "identity" (the paper's, as FOMM's) or "affine": a global affine map from
    # an anchor of the background found in the source and in the driving frame (internet.motion.BackgroundMotion),
    # for a moving camera. Only used when driving frames are given (self-reenactment, training); driving anchors
    # alone (relative motion) keep the identity. Off in every preset (docs/reproduction.md has what it measured).
    background: typing.Literal["identity", "affine"] = "identity"
    # The dense motion network (omega and M^0 of Eq 5) runs at image_size / downscale. 4 is the paper's (128² at
    # 512²: one flow cell is 1/128 of the frame); at a small output size 1/4 leaves 4 px per cell at the person's
    # edge, so 2 halves the cells and 1 keeps the paper's cell-to-frame ratio at 128² (docs/reproduction.md).
    # The anchor detector stays at 1/4; the pyramid is resampled to the generator's three skip sizes (1/4, 1/2, 1).
    downscale: typing.Literal[1, 2, 4] = 4


@dataclass(frozen=True)
class GeneratorConfig:
    """Stage II generator. ``skip_mode`` is ``multiscale`` (INTERNet, skips at 3 scales) or ``ss4x``."""

    skip_mode: str = "multiscale"
    channels: tuple[int, int, int] = (16, 32, 64)  # encoder channels at full, 1/2, 1/4 resolution
    bottleneck_channels: int = 128  # channels at 1/8 resolution
    num_bottleneck_blocks: int = 4
    num_refine_blocks: int = 1  # residual blocks after each skip fusion
    # The output blends the generated frame with the confidence-masked warp of the source image (TPSMM's
    # occlusion-blended output): O = M^2 * F^2(S) + (1 - M^2) * sigmoid(rgb(x)). It gives the flow a direct pixel
    # path from the reconstruction loss, and M the meaning of Sec 3.2 (where the warp can be trusted).
    # Not in the paper's Eq 6 (docs/reproduction.md shows the curves that make it the default checkpoint's).
    blend_output: bool = False


@dataclass(frozen=True)
class DiscriminatorConfig:
    """pix2pixHD-style multiscale patch discriminator."""

    num_scales: int = 2
    block_expansion: int = 32
    max_features: int = 256
    num_layers: int = 4


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an INTERNet model; saved as ``config.json`` beside the weights."""

    name: str = "internet-512"
    image_size: int = 512
    # Normalisation of every Stage I / Stage II block: "batch" (FOMM's BatchNorm, SyncBatchNorm under DDP) or
    # "group" (GroupNorm, per image; the default before this field existed, see internet.checkpoint).
    norm: typing.Literal["batch", "group"] = "batch"
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    @property
    def motion_size(self) -> int:
        """The anchor detector's resolution: 1/4 of the output size (128 for 512), as in the paper's Stage I."""
        return self.image_size // 4

    @property
    def dense_motion_size(self) -> int:
        """The dense motion network's resolution: ``image_size / motion.downscale``."""
        return self.image_size // self.motion.downscale

    def __post_init__(self) -> None:
        if self.image_size % 32 != 0 or self.image_size < 64:
            raise ConfigError(f"image_size must be a multiple of 32 and >= 64, got {self.image_size}")
        if self.generator.skip_mode not in ("multiscale", "ss4x"):
            raise ConfigError(f"generator.skip_mode must be 'multiscale' or 'ss4x', got {self.generator.skip_mode!r}")
        if self.anchors.num_anchors < 1:
            raise ConfigError("anchors.num_anchors must be at least 1")
        for part in ("anchors", "motion"):  # checked before 2**num_blocks: a huge exponent would never finish
            if not 1 <= getattr(self, part).num_blocks <= 8:
                raise ConfigError(f"{part}.num_blocks must be between 1 and 8, got {getattr(self, part).num_blocks}")
        down = 2**self.anchors.num_blocks
        if self.motion_size % down or self.dense_motion_size % 2**self.motion.num_blocks:
            raise ConfigError(
                f"motion sizes {self.motion_size}, {self.dense_motion_size} must be divisible by 2**num_blocks of the "
                "anchor and motion U-Nets"
            )


def _tiny() -> ModelConfig:
    return ModelConfig(
        name="tiny",
        image_size=64,
        anchors=AnchorConfig(num_anchors=10, block_expansion=8, max_features=32, num_blocks=3),
        motion=MotionConfig(block_expansion=8, max_features=32, num_blocks=3),
        generator=GeneratorConfig(channels=(4, 8, 16), bottleneck_channels=16, num_bottleneck_blocks=1),
        discriminator=DiscriminatorConfig(num_scales=2, block_expansion=8, max_features=32, num_layers=3),
    )


def _internet(size: int, skip_mode: str, name: str) -> ModelConfig:
    return ModelConfig(name=name, image_size=size, generator=GeneratorConfig(skip_mode=skip_mode))


def _small(size: int, skip_mode: str, name: str) -> ModelConfig:
    """Reduced-channel preset for CPU training on SynthRunway (the ablation's scale)."""
    return ModelConfig(
        name=name,
        image_size=size,
        anchors=AnchorConfig(block_expansion=16, max_features=256, num_blocks=4),
        motion=MotionConfig(block_expansion=16, max_features=256, num_blocks=4),
        generator=GeneratorConfig(
            skip_mode=skip_mode, channels=(8, 16, 32), bottleneck_channels=64, num_bottleneck_blocks=2
        ),
        discriminator=DiscriminatorConfig(num_scales=2, block_expansion=16, max_features=128, num_layers=3),
    )


PRESETS: dict[str, typing.Callable[[], ModelConfig]] = {
    "tiny": _tiny,
    "internet-512": lambda: _internet(512, "multiscale", "internet-512"),
    "ss4x-512": lambda: _internet(512, "ss4x", "ss4x-512"),
    "internet-256": lambda: _internet(256, "multiscale", "internet-256"),
    "ss4x-256": lambda: _internet(256, "ss4x", "ss4x-256"),
    "small-128": lambda: _small(128, "multiscale", "small-128"),
    "small-ss4x-128": lambda: _small(128, "ss4x", "small-ss4x-128"),
    "small-256": lambda: _small(256, "multiscale", "small-256"),
    "small-ss4x-256": lambda: _small(256, "ss4x", "small-ss4x-256"),
}


# --------------------------------------------------------------------------- strict dataclass parsing


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: must be one of {typing.get_args(tp)}, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping")
        kt, vt = typing.get_args(tp)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
            value = float(value)  # YAML 1.1 reads "1e-4" (no dot) as a string; people mean the number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            raise ConfigError(f"{where}: a {len(str(value))}-digit number is too large") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


# Fields that no longer exist, with the only value an old file may still hold for them (it meant "off").
_REMOVED_FIELDS: dict[str, dict[str, Any]] = {"GeneratorConfig": {"skip_image": False}}


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types are errors."""
    removed = _REMOVED_FIELDS.get(cls.__name__, {})
    for key, off in removed.items():
        if key in data:
            if data[key] != off:
                raise ConfigError(f"{where}: {key} is no longer supported (it was {off!r} in every preset)")
            data = {k: v for k, v in data.items() if k != key}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    odd = [k for k in data if not isinstance(k, str)]  # YAML reads `1:` or `on:` keys as int / bool
    if odd:
        raise ConfigError(f"{where}: keys must be field names, got {odd[0]!r}")
    unknown = sorted(set(data) - names)
    if unknown:
        shown = ", ".join(k if k.isprintable() and k.strip() == k and k else repr(k) for k in unknown)
        raise ConfigError(f"{where}: unknown key(s) {shown}; allowed: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """Dataclass -> plain JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def deep_update(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Recursively update the nested mapping ``dst`` with ``src`` (sub-mappings are copied, not shared)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            dst[k] = dict(dst[k])
            deep_update(dst[k], v)
        else:
            dst[k] = v


def merge(config: T, data: dict[str, Any], where: str = "config") -> T:
    """Return ``config`` updated by the (possibly nested, partial) mapping ``data``."""
    base = to_dict(config)
    deep_update(base, data)
    return from_dict(type(config), base, where)


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> nested dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        if not all(part.isidentifier() for part in key.split(".")):
            raise ConfigError(f"override {item!r}: the key must be dotted field names, such as train.lr")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return out


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping safely (``yaml.safe_load``; JSON is valid YAML)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {_one_line(exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping at the top level")
    _check_keys(data, str(path))
    return data


def _one_line(exc: Exception) -> str:
    """A YAML error as one line with its position (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError) and mark is not None:
        return f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def _check_keys(node: Any, where: str) -> None:
    """Every mapping key must be printable text: YAML reads ``1:``, ``on:`` or ``null:`` keys as int/bool/None,
    and a quoted key may hold a newline (which would break the one-line error naming it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str) or not key.isprintable():
                raise ConfigError(f"{where}: keys must be field names, got {key!r}")
            _check_keys(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_keys(value, f"{where}[{i}]")


def load_config(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ModelConfig:
    """A preset name (``internet-512``, ``ss4x-512``, ``tiny``...) or a YAML/JSON file, plus overrides.

    A file may name a ``preset`` to start from; its other keys override that preset.
    """
    key = str(name_or_path)
    if key in PRESETS:
        config = PRESETS[key]()
    else:
        path = Path(key)
        if not path.is_file():
            raise ConfigError(f"unknown preset or missing file {key!r}; presets: {', '.join(PRESETS)}")
        data = read_mapping(path)
        preset = data.pop("preset", None)
        if preset is not None and preset not in PRESETS:
            raise ConfigError(f"{path}: unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        config = PRESETS[preset]() if preset else ModelConfig()
        config = merge(config, data, str(path))
    if overrides:
        config = merge(config, parse_overrides(overrides), "override")
    return config
