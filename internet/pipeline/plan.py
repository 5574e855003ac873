"""Between the passes: check what pass 1 found and decide the render, once, as one :class:`RenderPlan`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from internet.errors import InputError
from internet.pipeline.analysis import DrivingTrack
from internet.pipeline.options import AnimateOptions
from internet.pipeline.photo import SourceMarks, animated_extent, frame_photo
from internet.sources.landmarks import Landmarks
from internet.video.framing import Crop, centre_crop
from internet.video.io import VideoInfo


@dataclass
class RenderPlan:
    """Everything pass 2 needs, decided from the options, the photo and pass 1."""

    video: VideoInfo  # the driving video
    options: AnimateOptions
    fps: float  # output frame rate
    size: int  # output side
    track: DrivingTrack  # pass 1's joints per frame (video pixels), framing and spools
    crop: Crop  # the driving video's crop, in its pixels
    reference_index: int  # the relative-motion reference frame
    reference_frame: np.ndarray | None  # that frame, cropped to size², when pass 1 chose it (None: frame 0)
    source: np.ndarray  # (S, S, 3) the framed photo
    source_landmarks: Landmarks | None  # its landmarks in the framed photo's pixels
    warnings: list[str]

    def landmarks_at(self, index: int) -> Landmarks | None:
        """Driving frame ``index``'s landmarks in the output's pixels (``None``: nobody found)."""
        track = self.track
        if index >= track.count or track.points[index] is None:
            return None
        return Landmarks(self.crop.to_crop(track.points[index], self.size), track.visibility[index])


def needs_people(options: AnimateOptions) -> bool:
    """Whether the render must find a person (in the photo and in the video) to frame or to move.

    ``--reference auto`` with ``--motion model --center-crop`` looks for nobody: the first frame is the reference."""
    explicit_best = options.wants_best_frame and options.reference == "best"
    return options.motion_source == "pose-rig" or not options.centre_crop or explicit_best


def check_person(found: bool, where: str, options: AnimateOptions) -> None:
    """Raise the one-line error for nobody found in ``where`` ("the photo" or "the driving video")."""
    if found:
        return
    if options.motion_source == "pose-rig":
        view = "full view" if where == "the photo" else "view"
        raise InputError(f"No person found in {where}: the pose rig needs a person in {view}")
    raise InputError(f"No person found in {where}; to use a centre crop with --motion model, add --center-crop")


def video_warnings(info: VideoInfo, options: AnimateOptions, fps: float) -> list[str]:
    """What the render will do differently from what the options and the video suggest."""
    warnings = []
    if options.max_seconds is not None and info.duration and info.duration > options.max_seconds + 0.5 / fps:
        warnings.append(
            f"The driving video lasts {info.duration:.1f} s; only the first {options.max_seconds:g} s are used"
        )
    if info.variable_frame_rate:
        warnings.append(f"Variable frame rate: resampled to a constant {fps:g} fps")
    if options.motion_source == "model" and options.background != "keep":
        warnings.append("--background applies to the pose rig only; the model keeps the source background")
    return warnings


def plan_render(
    photo: np.ndarray, video: VideoInfo, options: AnimateOptions, fps: float, size: int,
    source_marks: SourceMarks | None, track: DrivingTrack, warnings: list[str],
) -> RenderPlan:  # fmt: skip
    """Check pass 1's findings, choose the crop and the reference, and frame the photo like the driver."""
    if needs_people(options):
        check_person(track.framing is not None, "the driving video", options)
    if track.framing is not None and track.framing.found < track.count:
        warnings.append(f"No person found in {track.count - track.framing.found} of {track.count} driving frames")
    if options.wants_best_frame and options.reference == "best" and track.framing is None:
        warnings.append("--best-frame needs a person in the video; using the first frame")
    framing = track.framing
    crop = centre_crop(video.width, video.height) if options.centre_crop or framing is None else framing.crop
    best = options.wants_best_frame and track.best_frame is not None
    reference = track.best_index if best else 0
    extent = None
    if options.motion_source == "pose-rig" and source_marks is not None:
        extent = animated_extent(source_marks.points, track.points, reference, options.rig_mode)
    source, source_landmarks = frame_photo(photo, source_marks, framing, options, size, extent)
    reference_frame = crop.scaled(1.0 / track.scale).apply(track.best_frame, size) if best else None
    return RenderPlan(
        video, options, fps, size, track, crop, reference, reference_frame, source, source_landmarks, warnings
    )
