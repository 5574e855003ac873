"""Optical flow for real training videos: OpenCV DIS flow, forward-backward occlusion mask, disk cache.

The temporal losses need the backward flow of each training pair (D_{t-1}, D_t): ``current(x) ≈
previous(x + flow(x))``, in pixels, x then y. Real videos have no ground truth, so it is estimated with
DIS (Kroeger et al. 2016) and trusted only where the forward and backward estimates agree (Sundaram et al.
2010): ``|b(x) + f(x + b(x))|² < alpha (|b(x)|² + |f(x + b(x))|²) + beta``. The cache stores one small
``.npy`` per pair (written atomically), so DataLoader workers can fill it concurrently.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


@dataclass(frozen=True)
class FlowEstimate:
    flow: np.ndarray  # (H, W, 2) float32 backward flow in pixels: current(x) ≈ previous(x + flow(x))
    valid: np.ndarray  # (H, W) bool: forward-backward consistent and landing inside the previous frame


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.ascontiguousarray(image, dtype=np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY)


def dis_flow(source: np.ndarray, target: np.ndarray, preset: str = "medium") -> np.ndarray:
    """DIS flow f with ``source(x) ≈ target(x + f(x))`` for uint8 RGB or gray images; (H, W, 2) float32."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown DIS preset {preset!r}; choose one of {sorted(PRESETS)}")
    dis = cv2.DISOpticalFlow_create(PRESETS[preset])
    return dis.calc(_gray(source), _gray(target), None)


def sample_at(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an (H, W, C) float32 field at float pixel positions (border replicated)."""
    return cv2.remap(
        field, x.astype(np.float32), y.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def forward_backward_valid(
    backward: np.ndarray, forward: np.ndarray, alpha: float = 0.01, beta: float = 0.5
) -> np.ndarray:
    """Pixels of the current frame whose backward flow is confirmed by the forward flow (not occluded)."""
    h, w = backward.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    tx, ty = xs + backward[..., 0], ys + backward[..., 1]
    forward_there = sample_at(forward, tx, ty)
    mismatch = np.sum((backward + forward_there) ** 2, axis=-1)
    magnitude = np.sum(backward**2, axis=-1) + np.sum(forward_there**2, axis=-1)
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return inside & (mismatch < alpha * magnitude + beta)


def estimate_backward_flow(previous: np.ndarray, current: np.ndarray, preset: str = "medium") -> FlowEstimate:
    """Backward flow of ``current`` to ``previous`` with its forward-backward occlusion mask."""
    backward = dis_flow(current, previous, preset)
    forward = dis_flow(previous, current, preset)
    return FlowEstimate(flow=backward, valid=forward_backward_valid(backward, forward))


class FlowCache:
    """Backward flow of frame pairs (t-1, t) of one video at one resolution, one ``.npy`` per pair.

    Layout: ``root / key / {t:05d}.npy`` holding (H, W, 3) float16: flow x, flow y, valid (0/1).
    """

    def __init__(self, root: Path | str, key: str) -> None:
        self.folder = Path(root) / key

    def path(self, t: int) -> Path:
        return self.folder / f"{t:05d}.npy"

    def load(self, t: int) -> FlowEstimate | None:
        """The cached estimate for pair (t-1, t), or None when absent or unreadable."""
        try:
            data = np.load(self.path(t))
        except (OSError, ValueError):
            return None
        if data.ndim != 3 or data.shape[-1] != 3:
            return None
        return FlowEstimate(flow=data[..., :2].astype(np.float32), valid=data[..., 2] > 0.5)

    def store(self, t: int, estimate: FlowEstimate) -> None:
        """Write atomically (a temporary file renamed into place), safe with concurrent workers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        data = np.concatenate([estimate.flow, estimate.valid[..., None].astype(np.float32)], axis=-1)
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.save(file, data.astype(np.float16))
            os.replace(temporary, self.path(t))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get_or_compute(
        self, t: int, previous: np.ndarray, current: np.ndarray, preset: str = "medium"
    ) -> FlowEstimate:
        cached = self.load(t)
        if cached is not None and cached.flow.shape[:2] == current.shape[:2]:
            return cached
        estimate = estimate_backward_flow(previous, current, preset)
        self.store(t, estimate)
        # Return what a later load returns (float16 flow), so cached and fresh samples are identical.
        return FlowEstimate(flow=estimate.flow.astype(np.float16).astype(np.float32), valid=estimate.valid)
