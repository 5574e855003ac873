"""The motion-source interface, and the training-free pose rig behind it.

A motion source turns one framed driving frame (and its landmarks, when known) into an output frame plus a
:class:`~internet.frames.FrameMotion`, so the pipeline, the overlays and the app never ask which one ran. The
INTERNet model's source is :class:`internet.model_source.ModelSource`, in its own module so that a pose-rig
render never imports torch (2 s of a CLI run).
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

from internet.frames import FrameMotion
from internet.poserig import Landmarks, PoseRig, RigOptions
from internet.poserig.retarget import Mode

Background = Literal["keep", "white", "green"]


class MotionSource(Protocol):
    """Renders the prepared source in the pose of each driving frame, called once per frame in order."""

    size: int
    motion_seconds: float  # time spent on motion alone so far (anchors, relative motion); 0 if not separable

    def set_reference(self, driving: np.ndarray, landmarks: Landmarks | None) -> None:
        """The driving frame whose pose corresponds to the source's (relative motion)."""

    def render(self, driving: np.ndarray, landmarks: Landmarks | None) -> tuple[np.ndarray, FrameMotion]:
        """(S, S, 3) uint8 driving frame -> (S, S, 3) uint8 output and its motion."""


class PoseRigSource:
    """The pose rig (``internet.poserig``): driving landmarks retarget a skinned cut-out of the source."""

    def __init__(
        self,
        source: np.ndarray,
        source_landmarks: Landmarks,
        relative: bool | Mode,
        fps: float,
        background: Background = "keep",
    ) -> None:
        mode = relative if isinstance(relative, str) else "relative" if relative else "absolute"
        options = RigOptions(mode=mode, fps=fps)
        self.rig = PoseRig(source, source_landmarks, options)
        self.size = source.shape[0]
        self.background = background
        self.motion_seconds = 0.0  # retargeting happens inside PoseRig.render: counted as rendering

    def set_reference(self, driving: np.ndarray, landmarks: Landmarks | None) -> None:
        if landmarks is not None:
            self.rig.set_reference(landmarks)

    def render(self, driving: np.ndarray, landmarks: Landmarks | None) -> tuple[np.ndarray, FrameMotion]:
        return self.rig.render(landmarks, self.background)
