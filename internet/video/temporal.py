"""Temporal diagnostic: how much consecutive outputs disagree once the driver's own motion is removed.

For frame t, optical flow from driving frame t to t-1 (DIS, at low resolution) warps output t-1 onto
output t; the per-pixel colour error is weighted by the confidence map M_t (Sec 3.3), so regions the model
itself marks as unreliable count less. Flicker and jitter show up as hot spots; a steady render that follows
the driver stays dark. This is a diagnostic in the spirit of the paper's warping error (Sec 4), not a metric
with ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class WarpError:
    """One frame's temporal diagnostic."""

    map: np.ndarray  # (r, r) float32 in [0, 1]: |O_t - warp(O_{t-1})| (mean over RGB) times M_t
    mean: float  # sum(error * M) / sum(M); NaN for the first frame


def meter_resolution(size: int) -> int:
    """The meter's working resolution for size² outputs (the pipeline and the app's preview both use it, so
    their means agree)."""
    return max(32, size // 4)


class WarpErrorMeter:
    """Feed frames in order with :meth:`update`; keeps only the previous frame (memory is flat)."""

    def __init__(self, resolution: int = 128) -> None:
        self.resolution = resolution
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # (driving grey, output float)
        r = resolution
        self._grid = np.stack(np.meshgrid(np.arange(r, dtype=np.float32), np.arange(r, dtype=np.float32)), -1)

    def update(self, driving: np.ndarray, output: np.ndarray, confidence: np.ndarray) -> WarpError:
        """``driving`` (H, W, 3) or grey (H, W) and ``output`` (H, W, 3) are uint8 frames t; ``confidence`` is
        M_t (h, w) in [0, 1]."""
        r = self.resolution
        grey = cv2.resize(driving, (r, r), interpolation=cv2.INTER_AREA)
        if grey.ndim == 3:
            grey = cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY)
        out = cv2.resize(output, (r, r), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        weight = cv2.resize(np.asarray(confidence, np.float32), (r, r), interpolation=cv2.INTER_LINEAR)
        previous, self._previous = self._previous, (grey, out)
        if previous is None:
            return WarpError(np.zeros((r, r), np.float32), float("nan"))
        flow = self._flow.calc(grey, previous[0], None)  # for each pixel of t: where it was at t-1
        warped = cv2.remap(previous[1], self._grid + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        error = np.abs(out - warped).mean(axis=2)
        weighted = error * weight
        mean = float(weighted.sum() / max(weight.sum(), 1e-6))
        return WarpError(weighted.astype(np.float32), mean)

    def reset(self) -> None:
        self._previous = None
