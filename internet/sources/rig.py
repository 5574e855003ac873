"""The training-free pose rig (:mod:`internet.sources.poserig`) as a motion source."""

from __future__ import annotations

import numpy as np

from internet.sources.base import Background
from internet.sources.frames import FrameMotion
from internet.sources.landmarks import Landmarks
from internet.sources.poserig import PoseRig, RigOptions
from internet.sources.poserig.retarget import Mode


class PoseRigSource:
    """Driving landmarks retarget a skinned cut-out of the source."""

    def __init__(
        self, source: np.ndarray, source_landmarks: Landmarks, mode: Mode, fps: float, background: Background = "keep"
    ) -> None:
        self.rig = PoseRig(source, source_landmarks, RigOptions(mode=mode, fps=fps))
        self.size = source.shape[0]
        self.background = background

    def set_reference(self, driving: np.ndarray, landmarks: Landmarks | None) -> None:
        if landmarks is not None:
            self.rig.set_reference(landmarks)

    def render(self, driving: np.ndarray, landmarks: Landmarks | None) -> tuple[np.ndarray, FrameMotion]:
        return self.rig.render(landmarks, self.background)
