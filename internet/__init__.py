"""INTERNet: intrinsic temporal regularization for high-resolution human video synthesis."""

from internet.errors import CheckpointError, ConfigError, InputError

__all__ = ["CheckpointError", "ConfigError", "InputError"]
