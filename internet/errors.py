"""Errors meant for people: shown as one line in the CLI and as ``gr.Error`` in the app."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (unreadable image/video, no person, too long...). The message is shown as is."""


class CheckpointError(ValueError):
    """A checkpoint or config that cannot be used (wrong preset, shapes, dtypes, unsafe format)."""


class ConfigError(ValueError):
    """A configuration file or override that does not match the typed config."""
