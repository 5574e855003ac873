"""INTERNet: intrinsic temporal regularization for high-resolution human video synthesis."""

from internet.config import PRESETS, ModelConfig, load_config
from internet.errors import CheckpointError, ConfigError, InputError
from internet.geometry import Anchors
from internet.model import INTERNet, INTERNetOutput, SourceState

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
