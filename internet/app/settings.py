"""What the app lets people choose (:class:`Settings`) and what the server allows (:class:`StudioLimits`).

Limits come from environment variables so a Space or a container can tune them without code changes:

==============================  =========  ==========================================================
variable                        default    meaning
==============================  =========  ==========================================================
``INTERNET_MAX_SECONDS``        30         longest driving video used (longer ones are truncated)
``INTERNET_PREVIEW_SECONDS``    3          length of a preview
``INTERNET_MAX_FILE_SIZE``      50mb       largest upload (gradio refuses bigger files)
``INTERNET_MAX_QUEUE``          16         waiting requests before new ones are told the app is busy
``INTERNET_RENDER_CONCURRENCY`` 1          renders running at once
``INTERNET_PREVIEW_CONCURRENCY`` 2         previews running at once
``INTERNET_CACHE_SECONDS``      3600       age after which temporary outputs are deleted
``INTERNET_CHECKPOINT``         default    model checkpoint folder, "default" (committed one) or "none"
``INTERNET_DEVICE``             cpu        torch device for the model
==============================  =========  ==========================================================

Host and port use gradio's own ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from internet.errors import InputError
from internet.pipeline import PREVIEW_SECONDS, PREVIEW_SIZE, AnimateOptions
from internet.pipeline.options import MotionSourceName
from internet.sources.base import Background

SIZES = (256, 512)
MODES = ("relative", "absolute")  # the app's name for AnimateOptions.relative


@dataclass(frozen=True)
class StudioLimits:
    """Server-side limits; see the module docstring for the environment variables."""

    max_seconds: float = 30.0
    preview_seconds: float = PREVIEW_SECONDS
    preview_size: int = PREVIEW_SIZE
    max_file_size: str = "50mb"
    max_queue: int = 16
    render_concurrency: int = 1
    preview_concurrency: int = 2
    cache_seconds: int = 3600
    checkpoint: str = "default"
    device: str = "cpu"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StudioLimits:
        env = os.environ if env is None else env
        d = cls()

        def get(name: str, default, kind):
            text = env.get(f"INTERNET_{name}")
            if text is None or text.strip() == "":
                return default
            try:
                value = kind(text.strip())
            except ValueError:
                raise ValueError(f"INTERNET_{name}={text!r} is not a valid {kind.__name__}") from None
            if kind is not str and value <= 0:
                raise ValueError(f"INTERNET_{name} must be positive, got {text!r}")
            return value

        return cls(
            max_seconds=get("MAX_SECONDS", d.max_seconds, float),
            preview_seconds=get("PREVIEW_SECONDS", d.preview_seconds, float),
            max_file_size=get("MAX_FILE_SIZE", d.max_file_size, str),
            max_queue=get("MAX_QUEUE", d.max_queue, int),
            render_concurrency=get("RENDER_CONCURRENCY", d.render_concurrency, int),
            preview_concurrency=get("PREVIEW_CONCURRENCY", d.preview_concurrency, int),
            cache_seconds=get("CACHE_SECONDS", d.cache_seconds, int),
            checkpoint=get("CHECKPOINT", d.checkpoint, str),
            device=get("DEVICE", d.device, str),
        )


@dataclass(frozen=True)
class Settings:
    """The settings accordion, in the order of its widgets (and of the API's parameters)."""

    motion_source: MotionSourceName = "pose-rig"
    size: int = 512
    mode: Literal["relative", "absolute"] = "relative"
    best_frame: bool = False
    max_seconds: float = 10.0
    fps: float = 0.0  # 0: the driving video's frame rate
    keep_audio: bool = True
    background: Background = "keep"

    def options(self, limits: StudioLimits, warnings: list[str]) -> AnimateOptions:
        """Check the values (as an API caller may send anything) and build the pipeline's options."""
        if self.mode not in MODES:
            raise InputError(f"Unknown motion mode {self.mode!r}: use relative or absolute")
        size = _number(self.size, "output size")
        if size not in SIZES:
            raise InputError(f"The output size must be 256 or 512, got {self.size}")
        seconds = _number(self.max_seconds, "max seconds")
        if seconds <= 0:
            raise InputError("Max seconds must be positive")
        if seconds > limits.max_seconds:
            warnings.append(f"This server renders at most {limits.max_seconds:g} s of video; using that")
            seconds = limits.max_seconds
        fps = _number(self.fps, "fps")
        if not 0 <= fps <= 60:
            raise InputError(f"The frame rate must be between 1 and 60 (0: the driving video's), got {self.fps}")
        return AnimateOptions(
            motion_source=self.motion_source,
            size=int(size),
            relative=self.mode == "relative",
            best_frame=bool(self.best_frame),
            fps=float(fps) or None,
            max_seconds=seconds,
            background=self.background,
        )


def _number(value, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"The {name} must be a number, got {value!r}") from None
