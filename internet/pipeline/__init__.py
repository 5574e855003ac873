"""The pipeline: a photo and a driving video in, the animated video and its diagnostics out.

``Animator`` (:mod:`~internet.pipeline.animator`) runs pass 1 (:mod:`~internet.pipeline.analysis`), decides the
render (:mod:`~internet.pipeline.plan`) and runs pass 2 (:mod:`~internet.pipeline.render`, writing through
:mod:`~internet.pipeline.outputs`); the options and the result are in :mod:`~internet.pipeline.options`.
"""

from internet.pipeline.animator import Animator
from internet.pipeline.loading import default_checkpoint
from internet.pipeline.options import (
    MOTION_SOURCES,
    PREVIEW_SECONDS,
    PREVIEW_SIZE,
    REFERENCES,
    AnimateOptions,
    AnimationResult,
    Cancelled,
    OutputPaths,
    Progress,
    TimeSpent,
)
from internet.pipeline.poses import KnownPose, MediaPipePoses

__all__ = [
    "MOTION_SOURCES", "PREVIEW_SECONDS", "PREVIEW_SIZE", "REFERENCES", "AnimateOptions", "AnimationResult", "Animator",
    "Cancelled", "KnownPose", "MediaPipePoses", "OutputPaths", "Progress", "TimeSpent", "default_checkpoint",
]  # fmt: skip
