"""What a render is asked for and what it hands back: options, output paths, progress, the result."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from internet.errors import InputError
from internet.sources.base import BACKGROUNDS, Background
from internet.sources.frames import FrameResult
from internet.video.framing import Crop

MotionSourceName = Literal["pose-rig", "model"]  # which motion source renders
Reference = Literal["auto", "best", "first"]
MOTION_SOURCES: tuple[MotionSourceName, ...] = ("pose-rig", "model")
REFERENCES: tuple[Reference, ...] = ("auto", "best", "first")
PREVIEW_SECONDS = 3.0  # a preview renders the first seconds...
PREVIEW_SIZE = 256  # ...at this size


class Cancelled(RuntimeError):  # noqa: N818 - reads better at the call site than CancelledError
    """Raised inside :meth:`Animator.animate` when the cancel event is set; nothing is written."""


@dataclass
class AnimateOptions:
    """What to render. ``size`` applies to the pose rig; the model renders at its checkpoint's size."""

    motion_source: MotionSourceName = "pose-rig"  # the CLI's --motion
    size: int = 512
    relative: bool = True  # FOMM-style relative motion (False: absolute)
    best_frame: bool = False  # same as reference="best"
    # The relative-motion reference. "auto": the driving frame whose pose is closest to the photo's, and (pose
    # rig) each bone's offset from it kept only where it is small, absolute directions where it is large
    # (internet.sources.poserig.retarget.AUTO_KEEP); "best": that frame, plain relative motion; "first": the first
    # frame.
    reference: Reference = "auto"
    fps: float | None = None  # output frame rate (default: the driving video's)
    max_seconds: float | None = 60.0  # longer driving videos are truncated, with a warning
    background: Background = "keep"
    centre_crop: bool = False  # frame with a centre crop instead of the person's box
    margin: float = 0.1  # framing margin, fraction of the crop side on each side

    def __post_init__(self) -> None:
        if self.motion_source not in MOTION_SOURCES:
            raise InputError(f"Unknown motion source {self.motion_source!r}: use {_either(MOTION_SOURCES)}")
        if self.size < 32 or self.size % 2:
            raise InputError(f"The output size must be an even number of pixels ≥ 32, got {self.size}")
        if self.fps is not None and not 0 < self.fps <= 240:
            raise InputError(f"--fps must be between 0 and 240, got {self.fps}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise InputError("--max-seconds must be positive")
        if self.background not in BACKGROUNDS:
            raise InputError(f"Unknown background {self.background!r}: use {_either(BACKGROUNDS)}")
        if self.reference not in REFERENCES:
            raise InputError(f"Unknown reference {self.reference!r}: use {_either(REFERENCES)}")
        if self.best_frame:
            self.reference = "best"

    @property
    def wants_best_frame(self) -> bool:
        """Whether pass 1 looks for the driving frame closest to the photo's pose."""
        return self.relative and self.reference in ("auto", "best")

    @property
    def rig_mode(self) -> str:
        """The pose rig's retargeting mode for these options."""
        return "absolute" if not self.relative else "auto" if self.reference == "auto" else "relative"

    def preview(self, seconds: float = PREVIEW_SECONDS, size: int = PREVIEW_SIZE) -> AnimateOptions:
        """The same options for a quick look: the first ``seconds`` (or fewer) at ``size``²."""
        limit = seconds if self.max_seconds is None else min(seconds, self.max_seconds)
        return dataclasses.replace(self, size=size, max_seconds=limit)


def _either(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + f" or {choices[-1]}"


@dataclass
class OutputPaths:
    """Files to write; ``None`` skips that output."""

    video: Path | None = None  # H.264 result with the driving video's audio
    side_by_side: Path | None = None  # source | driving | result
    overlays: Path | None = None  # the 2×4 diagnostic panel per frame
    anchors_json: Path | None = None

    def as_list(self) -> list[Path]:
        """The paths that are set."""
        return [p for p in (self.video, self.side_by_side, self.overlays, self.anchors_json) if p is not None]


@dataclass
class Progress:
    """Reported to the ``progress`` callback: ``stage`` is "analyse" or "render"."""

    stage: str
    done: int
    total: int


TIMED_STAGES = ("decode", "pose", "render", "overlays", "encode")  # what TimeSpent reports


@dataclass
class TimeSpent:
    """Reported to the ``timing`` callback: ``seconds`` of work in one of the :data:`TIMED_STAGES` (not the passes
    that :class:`Progress` counts).

    "decode": waiting for decoded driving frames; "pose": finding the person (MediaPipe, photo and video);
    "render": cropping a driving frame and running the motion source; "overlays": the temporal meter and the
    diagnostic views; "encode": handing frames to the encoders and finishing them. A stage is reported many
    times (per frame or per pass), always on the thread that called :meth:`Animator.animate`; the stages of
    the threaded passes overlap, so their sum may exceed the render's wall time."""

    stage: str
    seconds: float


@dataclass
class Control:
    """The caller's hold on a running render: its progress and timing callbacks and its cancel event."""

    progress: Callable[[Progress], None] | None = None
    cancel: threading.Event | None = None
    timing: Callable[[TimeSpent], None] | None = None

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(Progress(stage, done, total))

    def spent(self, stage: str, seconds: float) -> None:
        """Hand ``seconds`` of ``stage`` to the timing callback, if any (call it on the caller's thread)."""
        if self.timing is not None:
            self.timing(TimeSpent(stage, seconds))

    def check(self) -> None:
        """Raise :class:`Cancelled` once the cancel event is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("Render cancelled")


@dataclass
class AnimationResult:
    """What a render produced."""

    outputs: OutputPaths
    frame_count: int
    fps: float
    size: int
    has_audio: bool  # the result video carries the driving video's audio
    source: np.ndarray  # (S, S, 3) the framed source
    crop: Crop  # the driving video's crop, in its (rotated) pixels
    reference_index: int  # the driving frame used as the relative-motion reference
    warp_error: np.ndarray  # (F,) per-frame mean of the temporal diagnostic; NaN for frame 0
    warnings: list[str] = field(default_factory=list)
    frames: list[FrameResult] = field(default_factory=list)  # only with keep_frames (previews)
    driving_joints: list[np.ndarray | None] = field(default_factory=list)  # pass 1's (13, 2) per frame, video px
