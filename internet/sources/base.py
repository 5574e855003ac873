"""The motion-source interface: what the pipeline asks of the INTERNet model and of the pose rig alike.

A motion source turns one framed driving frame (and its landmarks, when known) into an output frame plus a
:class:`~internet.sources.frames.FrameMotion`, so the pipeline, the overlays and the app never ask which one
ran. The two sources are :class:`internet.sources.rig.PoseRigSource` and
:class:`internet.sources.model.ModelSource` (its own module, so that a pose-rig render never imports torch:
2 s of a CLI run).
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

from internet.sources.frames import FrameMotion
from internet.sources.landmarks import Landmarks

Background = Literal["keep", "white", "green"]
BACKGROUNDS: tuple[Background, ...] = ("keep", "white", "green")


class MotionSource(Protocol):
    """Renders the prepared source in the pose of each driving frame, called once per frame in order."""

    size: int

    def set_reference(self, driving: np.ndarray, landmarks: Landmarks | None) -> None:
        """The driving frame whose pose corresponds to the source's (relative motion)."""

    def render(self, driving: np.ndarray, landmarks: Landmarks | None) -> tuple[np.ndarray, FrameMotion]:
        """(S, S, 3) uint8 driving frame -> (S, S, 3) uint8 output and its motion."""
