"""Per-frame data shared by both motion sources (INTERNet model and pose rig).

Everything here is NumPy so the overlays, the JSON export and the app never care which motion
source produced a frame. Coordinates follow the model's convention: normalised to [-1, 1], x then y,
``align_corners=True`` (-1 is the centre of the first pixel, +1 the centre of the last).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FrameMotion:
    """Stage-I quantities of one frame (paper Sec 3.3, Eq 5)."""

    anchors_source: np.ndarray  # (K, 2) float32 in [-1, 1], x then y
    anchors_driving: np.ndarray  # (K, 2)
    jacobians_source: np.ndarray  # (K, 2, 2)
    jacobians_driving: np.ndarray  # (K, 2, 2)
    weights: np.ndarray  # (K+1, h, w) soft weights; index 0 is the background/identity term; sum to 1
    flow: np.ndarray  # (h, w, 2) sampling grid: driving pixel -> source coordinates in [-1, 1]
    confidence: np.ndarray  # (h, w) confidence map M in [0, 1], the finest level
    confidence_levels: tuple[np.ndarray, ...] = field(default=())  # M^0, M^1, M^2 coarse to fine, when known
    # Anchors found on the driving frame itself, before relative motion / retargeting moved them into the
    # output's frame (``anchors_driving`` is what drove the output). None when the two are the same.
    anchors_observed: np.ndarray | None = None

    @property
    def anchors_on_driving(self) -> np.ndarray:
        """The anchors to draw over the driving frame."""
        return self.anchors_driving if self.anchors_observed is None else self.anchors_observed

    @property
    def num_levels(self) -> int:
        """How many confidence-pyramid levels this frame has (1 for a single map)."""
        return max(1, len(self.confidence_levels))

    def confidence_at(self, level: int) -> np.ndarray:
        """M^level of the pyramid (0 = coarsest); the single map when no pyramid is known."""
        if not self.confidence_levels:
            return self.confidence
        return self.confidence_levels[min(max(level, 0), len(self.confidence_levels) - 1)]


LEVELS = 3  # the confidence pyramid M^0, M^1, M^2: 1/4, 1/2 and full output resolution, 2x apart (Sec 3.2)


def confidence_level(motion: FrameMotion, level: int, size: int) -> np.ndarray:
    """M^level (0 = coarsest, 2 = the ``size``² output) of a frame's confidence pyramid: the model's own level
    when the frame carries the pyramid; otherwise (the pose rig keeps one map) resampled from the single map,
    area-averaged to coarser levels and bilinearly upsampled 2x to finer ones, as the model does between levels."""
    level = int(np.clip(level, 0, LEVELS - 1))
    if motion.num_levels == LEVELS:
        return motion.confidence_at(level)
    import cv2

    side = max(1, size >> (LEVELS - 1 - level))
    current = np.asarray(motion.confidence, np.float32)
    interpolation = cv2.INTER_AREA if current.shape[0] > side else cv2.INTER_LINEAR
    return cv2.resize(current, (side, side), interpolation=interpolation)


@dataclass
class FrameResult:
    """One rendered frame with everything the overlays need."""

    index: int
    output: np.ndarray  # (H, W, 3) uint8 RGB
    driving: np.ndarray  # (H, W, 3) uint8 RGB, the framed driving frame
    motion: FrameMotion
