"""INTERNet: intrinsic temporal regularization for high-resolution human video synthesis.

The model's names (``INTERNet``, ``Anchors``, ...) are imported on first use (PEP 562), so that importing a
torch-free part of the package (the pose rig, the pipeline, the media helpers) does not import torch: that is
2 s of every pose-rig CLI run.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from internet.config import PRESETS, ModelConfig, load_config
from internet.errors import CheckpointError, ConfigError, InputError

if TYPE_CHECKING:
    from internet.geometry import Anchors
    from internet.model import INTERNet, INTERNetOutput, SourceState

_LAZY = {
    "Anchors": "internet.geometry",
    "INTERNet": "internet.model",
    "INTERNetOutput": "internet.model",
    "SourceState": "internet.model",
}

__all__ = [
    "PRESETS",
    "Anchors",
    "CheckpointError",
    "ConfigError",
    "INTERNet",
    "INTERNetOutput",
    "InputError",
    "ModelConfig",
    "SourceState",
    "load_config",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once imported, an ordinary attribute
        return value
    raise AttributeError(f"module 'internet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
