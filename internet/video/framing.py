"""Person-aware square framing: one fixed crop for the whole driving video, the source framed to match.

The crop is computed once from every frame's person box (robust percentiles of the box edges, plus a
margin), so it never jitters. The source photo is cropped so that its person has the same height and the
same vertical placement in the square as the driver has in a typical frame; for absolute motion this makes
the two skeletons comparable. Crops may reach past the image borders; those pixels replicate the edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

MASK_THRESHOLD = 0.5


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels (x0, y0 inclusive top-left; x1, y1 exclusive bottom-right)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def scaled(self, factor: float) -> Box:
        return Box(self.x0 * factor, self.y0 * factor, self.x1 * factor, self.y1 * factor)


@dataclass(frozen=True)
class Crop:
    """A square window of ``side`` pixels with top-left corner (x0, y0) in image pixels (integers)."""

    x0: int
    y0: int
    side: int

    def apply(self, image: np.ndarray, size: int) -> np.ndarray:
        """Cut the window out of ``image`` (edges replicated where it reaches outside) and resize to size²."""
        h, w = image.shape[:2]
        x1, y1 = self.x0 + self.side, self.y0 + self.side
        if self.x0 >= 0 and self.y0 >= 0 and x1 <= w and y1 <= h:
            inner = image[self.y0 : y1, self.x0 : x1]
        else:  # the part inside the image with its edge pixels replicated (4x faster than clamped indices)
            (r0, r1, top, bottom), (c0, c1, left, right) = _span(self.y0, self.side, h), _span(self.x0, self.side, w)
            inner = cv2.copyMakeBorder(image[r0:r1, c0:c1], top, bottom, left, right, cv2.BORDER_REPLICATE)
        if self.side == size:  # a copy: the window of a decoded frame is a view of ffmpeg's read-only buffer
            return inner.copy()
        interpolation = cv2.INTER_AREA if self.side > size else cv2.INTER_LINEAR
        return cv2.resize(inner, (size, size), interpolation=interpolation)

    def to_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """Image pixel coordinates (..., 2) -> pixel coordinates in the size² crop (pixel centres match)."""
        scale = size / self.side
        return ((np.asarray(points, np.float64) - (self.x0, self.y0) + 0.5) * scale - 0.5).astype(np.float32)

    def from_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """Inverse of :meth:`to_crop`."""
        scale = self.side / size
        return ((np.asarray(points, np.float64) + 0.5) * scale - 0.5 + (self.x0, self.y0)).astype(np.float32)

    def scaled(self, factor: float) -> Crop:
        """The same window in an image resized by ``factor``."""
        return Crop(round(self.x0 * factor), round(self.y0 * factor), max(1, round(self.side * factor)))


def _span(start: int, side: int, length: int) -> tuple[int, int, int, int]:
    """Along one axis: the image range [first, last) a window [start, start + side) sees (at least one
    pixel, the nearest edge when the window lies wholly outside) and the border before and after it."""
    first = min(max(start, 0), length - 1)
    last = max(min(start + side, length), first + 1)
    before = min(max(first - start, 0), side - (last - first))
    return first, last, before, side - (last - first) - before


def square_around(cx: float, cy: float, side: float) -> Crop:
    side_i = max(2, round(side))
    return Crop(round(cx - side_i / 2), round(cy - side_i / 2), side_i)


def centre_crop(width: int, height: int) -> Crop:
    """The largest centred square (used when no person is detected and the caller accepts it)."""
    return square_around(width / 2, height / 2, min(width, height))


def person_box(points: np.ndarray, visibility: np.ndarray, mask: np.ndarray | None = None) -> Box | None:
    """The person's extent in pixels: the mask's bounding box, else the visible joints' box grown to cover
    the head and feet (joints stop at the nose and ankles). ``None`` when too little is visible."""
    if mask is not None:
        ys, xs = np.nonzero(mask > MASK_THRESHOLD)
        if len(xs) >= 16:
            return Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    seen = np.asarray(points)[np.asarray(visibility) > 0.5]
    if len(seen) < 4:
        return None
    (x0, y0), (x1, y1) = seen.min(axis=0), seen.max(axis=0)
    extent = max(x1 - x0, y1 - y0, 1.0)
    return Box(x0 - 0.12 * extent, y0 - 0.18 * extent, x1 + 0.12 * extent, y1 + 0.08 * extent)


@dataclass(frozen=True)
class VideoFraming:
    """One crop for the whole video, and the typical person box inside it (for matching the source)."""

    crop: Crop
    typical: Box  # median person box over the frames where someone was found
    found: int  # frames with a person


def frame_video(
    boxes: Sequence[Box | None],
    margin: float = 0.1,
    frame_size: tuple[int, int] | None = None,
    spread: float = 2.0,
) -> VideoFraming | None:
    """A fixed square crop holding the person in (almost) every frame: the ``spread``/``100-spread``
    percentiles of the box edges (robust to a few bad detections), grown by ``margin`` × side on each side.

    With ``frame_size`` (w, h) the margin shrinks (down to 2 %) rather than reach past the frame's short
    side, and the crop slides to stay inside the frame along each axis it fits in, so less edge is
    replicated. Returns ``None`` when no frame has a person.
    """
    found = [b for b in boxes if b is not None]
    if not found:
        return None
    edges = np.array([(b.x0, b.y0, b.x1, b.y1) for b in found], np.float64)
    x0, y0 = np.percentile(edges[:, :2], spread, axis=0)
    x1, y1 = np.percentile(edges[:, 2:], 100 - spread, axis=0)
    extent = max(x1 - x0, y1 - y0)
    side = extent * (1 + 2 * margin)
    typical = Box(*np.median(edges, axis=0))
    crop = square_around((x0 + x1) / 2, (y0 + y1) / 2, side)
    if frame_size is not None:
        w, h = frame_size
        side = max(min(side, min(w, h)), extent * 1.04)
        crop = square_around((x0 + x1) / 2, (y0 + y1) / 2, side)
        cx0 = min(max(crop.x0, 0), w - crop.side) if crop.side <= w else crop.x0
        cy0 = min(max(crop.y0, 0), h - crop.side) if crop.side <= h else crop.y0
        crop = Crop(cx0, cy0, crop.side)
    return VideoFraming(crop, typical, len(found))


def frame_source(box: Box, driving: VideoFraming | None = None, margin: float = 0.1) -> Crop:
    """Crop the source so its person has the driver's typical height and vertical placement in the square.

    Without a driving framing (or a degenerate one), the person is centred with ``margin`` around it.
    """
    cx, cy = box.centre
    if driving is None or driving.typical.height <= 1:
        return square_around(cx, cy, max(box.width, box.height) * (1 + 2 * margin))
    fraction = driving.typical.height / driving.crop.side  # person height / crop side in the driving video
    side = max(box.height / max(fraction, 1e-3), box.width * (1 + 2 * margin))
    crop_cy = driving.crop.y0 + driving.crop.side / 2
    offset = (driving.typical.centre[1] - crop_cy) / driving.crop.side  # person centre below crop centre
    return square_around(cx, cy - offset * side, side)


def fit_crop(crop: Crop, box: Box, margin: float = 0.05) -> Crop:
    """``crop``, grown and moved as little as possible so that ``box`` lies inside it with ``margin`` × side
    to spare on every side (the whole animated figure stays in view: :func:`internet.pipeline` plans ``box``
    from the retargeted poses of every frame)."""
    side = float(crop.side)
    side = max(side, box.width / (1 - 2 * margin), box.height / (1 - 2 * margin))
    pad = margin * side

    def place(start: float, low: float, high: float) -> float:  # start within [high + pad - side, low - pad]
        lo, hi = high + pad - side, low - pad
        return min(max(start, lo), hi) if lo <= hi else (lo + hi) / 2

    grow = (side - crop.side) / 2
    x0 = place(crop.x0 - grow, box.x0, box.x1)
    y0 = place(crop.y0 - grow, box.y0, box.y1)
    return Crop(int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(side)) + 1 if side > crop.side else crop.side)


def even_size(value: float) -> int:
    """``value`` rounded to an even pixel count ≥ 2 (H.264's yuv420p needs even sides)."""
    return max(2, int(round(value / 2)) * 2)
