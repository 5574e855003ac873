"""The photo's side of a render: its pose (MediaPipe, cached by pixels) and its crop, framed like the driver."""

from __future__ import annotations

import collections
import hashlib
import os
import threading
from dataclasses import dataclass

import numpy as np

from internet.errors import InputError
from internet.pipeline.options import AnimateOptions
from internet.sources.landmarks import Landmarks
from internet.video.framing import Box, VideoFraming, centre_crop, even_size, fit_crop, frame_source, person_box
from internet.video.images import load_image, resize_area

ANALYSIS_SIDE = 640  # long side of the frames MediaPipe sees (it works at 256 internally)


def as_rgb(source: str | os.PathLike | np.ndarray) -> np.ndarray:
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise InputError("The source image must be an RGB uint8 array")
        return source
    return load_image(source)


class PhotoPoses:
    """MediaPipe's result for the last few photos, by their pixels. The app renders the same photo again and
    again (a preview, then the render; one garment, many videos), and each look costs a MediaPipe graph
    and 0.2 s. The cached arrays are read-only, so no caller can change them for the next render."""

    CAPACITY = 4

    def __init__(self) -> None:
        self._entries: collections.OrderedDict[bytes, SourceMarks] = collections.OrderedDict()
        self._lock = threading.Lock()

    def find(self, rgb: np.ndarray) -> SourceMarks | None:
        """The photo's landmarks, from the cache or from MediaPipe (``None``: nobody found)."""
        rgb = np.ascontiguousarray(rgb)
        digest = hashlib.blake2b(repr((rgb.shape, rgb.dtype.str)).encode(), digest_size=16)
        digest.update(rgb.data)
        key = digest.digest()
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        marks = _find_in_photo(rgb)
        if marks is not None:
            for array in (marks.landmarks.points, marks.landmarks.visibility, marks.landmarks.mask):
                if array is not None:
                    array.flags.writeable = False
            with self._lock:
                self._entries[key] = marks
                while len(self._entries) > self.CAPACITY:
                    self._entries.popitem(last=False)
        return marks


def _find_in_photo(rgb: np.ndarray):
    """MediaPipe on the photo (downscaled to ANALYSIS_SIDE); landmarks and mask at that scale, and the scale."""
    from internet.sources.landmarks import MediaPipeProvider

    h, w = rgb.shape[:2]
    scale = max(h, w) / ANALYSIS_SIDE if max(h, w) > ANALYSIS_SIDE else 1.0
    small = rgb if scale == 1.0 else resize_area(rgb, (even_size(w / scale), even_size(h / scale)))
    scale = w / small.shape[1]
    with MediaPipeProvider(static_image_mode=True) as provider:
        marks = provider.find(small)
    if marks is None:
        return None
    return SourceMarks(Landmarks(marks.points * scale, marks.visibility, marks.mask), scale)


@dataclass
class SourceMarks:
    """Source landmarks in photo pixels; the mask stays at analysis scale (``mask_scale`` photo px per px)."""

    landmarks: Landmarks
    mask_scale: float

    @property
    def points(self) -> np.ndarray:
        return self.landmarks.points

    @property
    def visibility(self) -> np.ndarray:
        return self.landmarks.visibility


FIGURE_PAD = 0.3  # past the outermost joints (nose, wrists, ankles) the figure reaches this many torso lengths
FIT_MARGIN = 0.03  # and the output keeps this fraction of its side free around the whole figure


def animated_extent(source: np.ndarray, driving: list[np.ndarray | None], reference: int, mode: str) -> Box | None:
    """The box (photo pixels) that the animated figure covers over the whole clip: the photo's joints
    retargeted to every driving frame's joints (``driving``, video pixels; as the rig will, unsmoothed),
    ``FIGURE_PAD`` torso lengths around them for the head, hands and feet. ``None`` when the driver is never
    seen."""
    from internet.sources.poserig.retarget import retarget, torso_length

    ref = driving[reference] if reference < len(driving) else None
    if ref is None:
        ref = next((p for p in driving if p is not None), None)
    if ref is None:
        return None
    poses = [source] + [retarget(source, p, ref, mode) for p in driving if p is not None]
    joints = np.concatenate(poses)
    pad = FIGURE_PAD * torso_length(source)
    (x0, y0), (x1, y1) = joints.min(axis=0) - pad, joints.max(axis=0) + pad
    return Box(float(x0), float(y0), float(x1), float(y1))


def frame_photo(
    rgb, marks: SourceMarks | None, framing: VideoFraming | None, options: AnimateOptions, size: int,
    extent: Box | None = None,
):  # fmt: skip
    """Crop the photo like the driver and move its landmarks (and mask) into the crop; with ``extent`` (the
    animated figure's box over the clip, photo pixels), the crop grows or moves as little as it must to hold
    it (:func:`~internet.video.framing.fit_crop`)."""
    h, w = rgb.shape[:2]
    if marks is None or options.centre_crop:
        crop = centre_crop(w, h)
    else:
        mask = marks.landmarks.mask
        box = person_box(marks.points / marks.mask_scale, marks.visibility, mask)
        if box is None:
            raise InputError("The person in the photo is not visible enough to frame")
        crop = frame_source(box.scaled(marks.mask_scale), framing, options.margin)
        if extent is not None:
            crop = fit_crop(crop, extent, FIT_MARGIN)
    framed = crop.apply(rgb, size)
    if marks is None:
        return framed, None
    mask = marks.landmarks.mask
    mask = None if mask is None else crop.scaled(1.0 / marks.mask_scale).apply(mask, size)
    return framed, Landmarks(crop.to_crop(marks.points, size), marks.visibility, mask)
