"""Temporal smoothing of landmarks: the One-Euro filter (Casiez et al., CHI 2012) and lost-frame handling."""

from __future__ import annotations

import math

import numpy as np

from internet.sources.landmarks import Landmarks
from internet.sources.poserig.retarget import facing, mirrored


def _alpha(cutoff_hz: float, dt: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Adaptive low-pass filter on arrays: cutoff = min_cutoff + beta * |speed|.

    Slow motion is smoothed strongly (jitter removed), fast motion lightly (little lag). Works element-wise
    on arrays of any fixed shape; ``x`` is in whatever units ``beta`` was chosen for.
    """

    def __init__(self, fps: float, min_cutoff: float = 1.0, beta: float = 0.5, d_cutoff: float = 1.0) -> None:
        self.dt = 1.0 / fps
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            return x.copy()
        a_d = _alpha(self.d_cutoff, self.dt)
        self.dx = a_d * (x - self.x) / self.dt + (1 - a_d) * self.dx
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        tau = 1.0 / (2.0 * np.pi * cutoff)
        a = 1.0 / (1.0 + tau / self.dt)
        self.x = a * x + (1 - a) * self.x
        return self.x.copy()

    def reset(self) -> None:
        self.x = self.dx = None


class LandmarkSmoother:
    """One-Euro smoothing of driving landmarks, holding joints that are invisible or lost.

    Coordinates are filtered in units of ``scale`` pixels (use the torso length) so the filter's
    parameters do not depend on the frame size. A joint whose visibility is below ``min_visibility`` keeps
    its last value; a frame with no person (``None``) repeats the last smoothed pose for up to
    ``hold_frames`` frames, after which ``None`` is returned.
    """

    def __init__(
        self,
        fps: float,
        scale: float,
        min_visibility: float = 0.3,
        hold_frames: int = 10_000,
        min_cutoff: float = 1.0,
        beta: float = 0.5,
    ) -> None:
        self.filter = OneEuroFilter(fps, min_cutoff=min_cutoff, beta=beta)
        self.scale = max(float(scale), 1e-6)
        self.min_visibility, self.hold_frames = min_visibility, hold_frames
        self.last: Landmarks | None = None
        self.missing = 0

    def __call__(self, landmarks: Landmarks | None) -> Landmarks | None:
        if landmarks is None:
            self.missing += 1
            return self.last if self.missing <= self.hold_frames else None
        self.missing = 0
        points = landmarks.points.astype(np.float64)
        if self.last is not None:
            hidden = landmarks.visibility < self.min_visibility
            points[hidden] = self.last.points[hidden]
        smoothed = self.filter(points / self.scale) * self.scale
        self.last = Landmarks(smoothed.astype(np.float32), landmarks.visibility, landmarks.mask)
        return self.last


class FacingGuard:
    """Names a driver's sides as the photo's are seen: a driver who turns their back to the camera is drawn as
    the photo's front in the mirrored pose (the silhouette of the driver), not as a torso turned inside out.

    Landmarks name the body's own sides, so a person seen from behind has their left on the image's left; the
    rig would mirror the photo's torso through its skeleton (and tear the garment from the legs). So while a
    driver faces the other way from the photo (:func:`~internet.sources.poserig.retarget.facing` beyond
    ``margin``, in torso lengths, on the other side of 0), their left and right are exchanged; in between (a
    profile, a turn under way) the last choice holds, so the limbs swap once, where the body is at its
    narrowest. A single frame with its sides mislabelled is put right the same way.
    """

    def __init__(self, photo_points: np.ndarray, margin: float = 0.15) -> None:
        self.sign = 1.0 if facing(photo_points) >= 0 else -1.0
        self.margin = margin
        self.away = False

    def like_photo(self, landmarks: Landmarks) -> Landmarks:
        """``landmarks`` with their sides exchanged if they face the other way from the photo (no memory)."""
        return mirrored(landmarks) if facing(landmarks.points) * self.sign < 0 else landmarks

    def __call__(self, landmarks: Landmarks | None) -> Landmarks | None:
        if landmarks is None:
            return None
        f = facing(landmarks.points) * self.sign
        if abs(f) > self.margin:
            self.away = f < 0
        return mirrored(landmarks) if self.away else landmarks
