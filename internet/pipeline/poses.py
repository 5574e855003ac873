"""Where a render's landmarks come from: MediaPipe Pose (what the app and the CLI use), or landmarks known in
advance (:class:`KnownPose`: joints from another tracker or a motion-capture export, or SynthRunway's exact
joints, which the tests, the benchmarks and the evaluations replay).

A :class:`PoseFinder` finds the person in the photo once, and hands pass 1 one tracker per segment of the
driving video; a tracker sees the frames of its segment in order."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from internet.pipeline.photo import PhotoPoses, SourceMarks
from internet.sources.landmarks import Landmarks
from internet.video.framing import Box, person_box


@dataclass
class Sighting:
    """The person in one driving frame, in the video's pixels."""

    landmarks: Landmarks  # without a mask
    box: Box | None  # the person's box (None: not enough of the person to frame)


class Tracker(Protocol):
    def find(self, frame: np.ndarray, index: int) -> Sighting | None:
        """The person in driving frame ``index`` (``frame``: its pixels at analysis size), or None."""


class PoseFinder(Protocol):
    segmentable: bool  # whether several trackers may split a clip between them

    def photo(self, rgb: np.ndarray) -> SourceMarks | None:
        """The person in the photo (``None``: nobody)."""

    def tracker(self, scale: float) -> contextlib.AbstractContextManager[Tracker]:
        """A tracker for one segment; ``scale`` takes analysis pixels to the video's."""


class MediaPipePoses:
    """MediaPipe Pose: the photo in static mode (cached by its pixels), the video in tracking mode."""

    segmentable: ClassVar[bool] = True

    def __init__(self) -> None:
        self._photos = PhotoPoses()

    def photo(self, rgb: np.ndarray) -> SourceMarks | None:
        return self._photos.find(rgb)

    @contextlib.contextmanager
    def tracker(self, scale: float) -> Iterator[Tracker]:
        from internet.sources.landmarks import MediaPipeProvider

        with MediaPipeProvider(static_image_mode=False) as provider:
            yield _MediaPipeTracker(provider, scale)


@dataclass
class _MediaPipeTracker:
    provider: object  # a MediaPipeProvider
    scale: float

    def find(self, frame: np.ndarray, index: int) -> Sighting | None:
        marks = self.provider.find(frame)
        if marks is None:
            return None
        box = person_box(marks.points, marks.visibility, marks.mask)
        landmarks = Landmarks(marks.points * self.scale, marks.visibility)  # analysis pixels -> video pixels
        return Sighting(landmarks, None if box is None else box.scaled(self.scale))


@dataclass
class KnownPose:
    """Landmarks known in advance replace MediaPipe: ``Animator(poses=KnownPose(...))`` renders with joints from
    elsewhere (another pose tracker, a motion-capture export, SynthRunway's ground truth).

    ``source`` is in the photo's pixels (its mask, if any, at the photo's size); ``driving[i]`` is frame i
    of the driving video after resampling to the output fps, in the video's pixels (``None``: nobody).
    """

    source: Landmarks
    driving: Sequence[Landmarks | None]
    segmentable: ClassVar[bool] = False  # frames are looked up by index: nothing to gain from two trackers

    def photo(self, rgb: np.ndarray) -> SourceMarks | None:
        return SourceMarks(self.source, 1.0)

    @contextlib.contextmanager
    def tracker(self, scale: float) -> Iterator[Tracker]:
        yield self

    def find(self, frame: np.ndarray, index: int) -> Sighting | None:
        marks = self.driving[index] if index < len(self.driving) else None
        if marks is None:
            return None
        box = person_box(marks.points, marks.visibility, marks.mask)
        return Sighting(Landmarks(marks.points, marks.visibility), box)
