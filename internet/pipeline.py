"""Video in, frames and overlays out: ``Animator.animate(source_image, driving_video, options) -> Result``.

Two passes over the driving video, both streamed (memory is flat in video length):

1. *analyse*: decode at low resolution, find the person in every frame (MediaPipe Pose, tracking mode),
   keep only the 13 joints and a box per frame; choose one fixed crop for the whole video and, with
   ``best_frame``, the reference frame whose normalised pose is closest to the source's;
2. *render*: decode again, crop every frame, run the motion source (INTERNet model or pose rig), and hand
   the frames to the encoders (result, side-by-side, overlays) and the anchors JSON as they come. When only
   the temporal meter looks at the driving pixels (the pose rig without side-by-side, overlays or previews),
   pass 1 spools small grey copies of its frames to a temporary file and pass 2 reads those instead of
   decoding the video a second time (:class:`_GreySpool`).

Outputs appear under their final names only when everything succeeded; a cancelled or failed render
leaves nothing behind (see :class:`~internet.media.VideoWriter`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import itertools
import math
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from internet.blas import single_threaded_blas
from internet.errors import InputError
from internet.export import AnchorsJsonWriter
from internet.frames import FrameResult
from internet.framing import Box, Crop, VideoFraming, centre_crop, fit_crop, frame_source, frame_video, person_box
from internet.media import VideoInfo, VideoReader, VideoWriter, load_image, probe_video, put_unless_stopped
from internet.motion_sources import Background, MotionSource, PoseRigSource
from internet.overlays import overlay_panel, side_by_side
from internet.poserig import Landmarks
from internet.temporal import WarpErrorMeter, meter_resolution

Motion = Literal["pose-rig", "model"]
Reference = Literal["auto", "best", "first"]
ANALYSIS_SIDE = 640  # long side of the frames MediaPipe sees (it works at 256 internally)
ANALYSIS_SEGMENTS = 2  # with Animator.parallel, pass 1 runs this many trackers side by side
# The side-by-side and overlay videos are for looking at, not for keeping: x264 ultrafast takes 0.55x superfast's CPU
# (7.7 vs 13.8 ms per 1536x512 frame) for ~1.4x the bytes at the same crf, with no lower PSNR. The result video keeps
# VideoWriter's default (veryfast, crf 18).
DIAGNOSTIC_ENCODING = {"preset": "ultrafast", "crf": 23}
MIN_SEGMENT_FRAMES = 16  # videos shorter than this per segment are tracked in one piece
# A later segment's tracker starts this many frames before its segment, and those frames' results are dropped:
# MediaPipe's tracking and landmark smoothing have settled by the segment's first frame, as one tracker's have
# (on the development clip, the largest joint difference to one tracker: 0.09 torso lengths without, 0.03 with).
SEGMENT_WARMUP = 16
SPOOL_SIDE = 3  # long side of the spooled grey frames, in temporal-meter resolutions (crops keep >= 1 of them)
PARALLEL_MIN_CPUS = 2  # Animator(parallel=None) runs the threaded passes from this many CPUs on
CHECKPOINTS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"


class Cancelled(RuntimeError):  # noqa: N818 - reads better at the call site than CancelledError
    """Raised inside :meth:`Animator.animate` when the cancel event is set; nothing is written."""


@dataclass
class AnimateOptions:
    """What to render. ``size`` applies to the pose rig; the model renders at its checkpoint's size."""

    motion: Motion = "pose-rig"
    size: int = 512
    relative: bool = True  # FOMM-style relative motion (False: absolute)
    best_frame: bool = False  # same as reference="best"
    # The relative-motion reference. "auto": the driving frame whose pose is closest to the photo's, and (pose
    # rig) each bone's offset from it kept only where it is small, absolute directions where it is large
    # (internet.poserig.retarget.AUTO_KEEP); "best": that frame, plain relative motion; "first": the first frame.
    reference: Reference = "auto"
    fps: float | None = None  # output frame rate (default: the driving video's)
    max_seconds: float | None = 60.0  # longer driving videos are truncated, with a warning
    background: Background = "keep"
    centre_crop: bool = False  # frame with a centre crop instead of the person's box
    margin: float = 0.1  # framing margin, fraction of the crop side on each side

    def __post_init__(self) -> None:
        if self.motion not in ("pose-rig", "model"):
            raise InputError(f"Unknown motion source {self.motion!r}: use pose-rig or model")
        if self.size < 32 or self.size % 2:
            raise InputError(f"The output size must be an even number of pixels ≥ 32, got {self.size}")
        if self.fps is not None and not 0 < self.fps <= 240:
            raise InputError(f"--fps must be between 0 and 240, got {self.fps}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise InputError("--max-seconds must be positive")
        if self.background not in ("keep", "white", "green"):
            raise InputError(f"Unknown background {self.background!r}: use keep, white or green")
        if self.reference not in ("auto", "best", "first"):
            raise InputError(f"Unknown reference {self.reference!r}: use auto, best or first")
        if self.best_frame:
            self.reference = "best"

    @property
    def wants_best_frame(self) -> bool:
        """Whether pass 1 looks for the driving frame closest to the photo's pose."""
        return self.relative and self.reference in ("auto", "best")


@dataclass
class OutputPaths:
    """Files to write; ``None`` skips that output."""

    video: Path | None = None  # H.264 result with the driving video's audio
    side_by_side: Path | None = None  # source | driving | result
    overlays: Path | None = None  # the 2×4 diagnostic panel per frame
    anchors_json: Path | None = None


@dataclass
class Progress:
    """Reported to the ``progress`` callback: ``stage`` is "analyse" or "render"."""

    stage: str
    done: int
    total: int


@dataclass
class StageTimes:
    """Seconds spent per stage (decode waits, MediaPipe, motion, rendering, overlays, encoding)."""

    decode: float = 0.0
    pose: float = 0.0
    motion: float = 0.0
    render: float = 0.0
    overlays: float = 0.0
    encode: float = 0.0
    total: float = 0.0


@dataclass
class AnimationResult:
    """What a render produced."""

    outputs: OutputPaths
    frame_count: int
    fps: float
    size: int
    has_audio: bool  # the result video carries the driving video's audio
    source: np.ndarray  # (S, S, 3) the framed source
    crop: Crop  # the driving video's crop, in its (rotated) pixels
    reference_index: int  # the driving frame used as the relative-motion reference
    warp_error: np.ndarray  # (F,) per-frame mean of the temporal diagnostic; NaN for frame 0
    warnings: list[str] = field(default_factory=list)
    frames: list[FrameResult] = field(default_factory=list)  # only with keep_frames (previews)
    times: StageTimes = field(default_factory=StageTimes)
    driving_joints: list[np.ndarray | None] = field(default_factory=list)  # pass 1's (13, 2) per frame, video px


@dataclass
class KnownPose:
    """Exact landmarks replacing MediaPipe (SynthRunway ground truth in tests and benchmarks).

    ``source`` is in the photo's pixels (its mask, if any, at the photo's size); ``driving[i]`` is frame i
    of the driving video after resampling to the output fps, in the video's pixels (``None``: nobody).
    """

    source: Landmarks
    driving: Sequence[Landmarks | None]


@dataclass
class _DrivingTrack:
    """Pass-1 result: per-frame joints in the video's pixels, and the framing."""

    count: int
    points: list[np.ndarray | None]  # (13, 2) per frame, None where nobody was found
    visibility: list[np.ndarray | None]
    framing: VideoFraming | None
    best_index: int
    best_frame: np.ndarray | None  # the best-frame candidate at analysis resolution
    scale: float  # analysis pixels -> video pixels
    spools: list[_GreySpool] = field(default_factory=list)  # per segment, in order; empty when not spooled


@dataclass
class _Segment:
    """Pass-1 results for the frames [start, start + limit) (``limit`` None: to the end), filled by a worker."""

    start: int
    limit: int | None
    warmup: int = 0  # frames before ``start`` tracked to settle the tracker, not kept
    points: list[np.ndarray | None] = field(default_factory=list)
    visibility: list[np.ndarray | None] = field(default_factory=list)
    boxes: list[Box | None] = field(default_factory=list)
    best: tuple[float, int, np.ndarray | None] = (math.inf, 0, None)  # (pose distance, frame index, frame)
    done: int = 0
    decode_seconds: float = 0.0
    pose_seconds: float = 0.0
    error: BaseException | None = None
    spool: _GreySpool | None = None


@dataclass
class _AnalysisJob:
    """What every pass-1 worker shares; :meth:`run` analyses one segment in the calling thread."""

    info: VideoInfo
    fps: float
    options: AnimateOptions
    analysis: tuple[int, int]  # decode size (w, h)
    scale: float  # analysis pixels -> video pixels
    use_mediapipe: bool
    known_pose: KnownPose | None
    source_marks: _SourceMarks | None
    stop: threading.Event

    def run(self, segment: _Segment) -> None:
        from internet.poserig import MediaPipeProvider, pose_distance

        options = self.options
        try:
            with contextlib.ExitStack() as stack:
                provider = (
                    stack.enter_context(MediaPipeProvider(static_image_mode=False)) if self.use_mediapipe else None
                )
                limit = None if segment.limit is None else segment.limit + segment.warmup
                reader = stack.enter_context(VideoReader(
                    self.info, fps=self.fps, max_seconds=options.max_seconds, size=self.analysis,
                    start_frame=segment.start - segment.warmup, max_frames=limit,
                ))  # fmt: skip
                warmup = segment.warmup
                while not self.stop.is_set():
                    t0 = time.perf_counter()
                    frame = next(reader, None)
                    segment.decode_seconds += time.perf_counter() - t0
                    if frame is None:
                        break
                    if warmup > 0:  # settles the tracker; the previous segment keeps this frame
                        t0 = time.perf_counter()
                        if provider is not None:
                            provider.detect(frame)
                        segment.pose_seconds += time.perf_counter() - t0
                        warmup -= 1
                        continue
                    index = segment.start + len(segment.points)
                    t0 = time.perf_counter()
                    marks, box = None, None
                    if provider is not None:
                        marks = provider.detect(frame)
                        box = None if marks is None else person_box(marks.points, marks.visibility, marks.mask)
                        if marks is not None:  # analysis pixels -> video pixels
                            marks = Landmarks(marks.points * self.scale, marks.visibility)
                            box = None if box is None else box.scaled(self.scale)
                    elif self.known_pose is not None and index < len(self.known_pose.driving):
                        marks = self.known_pose.driving[index]
                        box = None if marks is None else person_box(marks.points, marks.visibility, marks.mask)
                    segment.pose_seconds += time.perf_counter() - t0
                    if segment.spool is not None:
                        segment.spool.append(frame)
                    segment.points.append(None if marks is None else marks.points)
                    segment.visibility.append(None if marks is None else marks.visibility)
                    segment.boxes.append(box)
                    if marks is not None and options.wants_best_frame and self.source_marks is not None:
                        distance = pose_distance(self.source_marks.landmarks, marks)
                        if distance < segment.best[0]:
                            segment.best = (distance, index, frame.copy())
                    segment.done += 1
        except BaseException as error:  # handed to the waiting thread, which raises it
            segment.error = error


def default_checkpoint() -> Path | None:
    """The committed SynthRunway checkpoint (``assets/checkpoints/*/model.safetensors``), if any."""
    found = sorted(p.parent for p in CHECKPOINTS.glob("*/model.safetensors") if (p.parent / "config.json").is_file())
    preferred = [p for p in found if "synthrunway" in p.name]
    return (preferred or found or [None])[-1]


class Animator:
    """Animate a photo with a driving video through either motion source; reusable across calls."""

    def __init__(self, model=None, device: str = "cpu", parallel: bool | None = None) -> None:
        """``parallel``: two MediaPipe trackers side by side in pass 1 and a render thread in pass 2 (the
        outputs differ only where the second tracker starts). ``None`` turns it on with 2 or more CPUs: on 2
        vCPUs it measured 1.08-1.10x end to end once numpy's BLAS stopped spinning on the second one (the two
        trackers pay; the render thread alone does not; docs/performance.md)."""
        if model is not None:  # channels-last, sub-pixel, pre-packed: see internet.fast, docs/performance.md
            from internet.fast import inference_copy

            model = inference_copy(model)
        self.model = model
        self.device = device
        self.parallel = (os.cpu_count() or 1) >= PARALLEL_MIN_CPUS if parallel is None else parallel
        self._photos = _PhotoPoses()

    @classmethod
    def from_pretrained(cls, checkpoint: str | os.PathLike | None, device: str = "cpu") -> Animator:
        """``None``: pose rig only. ``"default"``: the committed checkpoint. Otherwise a checkpoint folder."""
        if checkpoint is None:
            return cls(None, device)
        from internet.checkpoint import check_weights_fit, read_config
        from internet.errors import CheckpointError
        from internet.model import INTERNet

        path = default_checkpoint() if str(checkpoint) == "default" else Path(checkpoint)
        if path is None:
            raise InputError("No model checkpoint is committed yet: pass --checkpoint DIR or use --motion pose-rig")
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise InputError(f"{path} is not a checkpoint folder (needs model.safetensors and config.json)")
        try:  # names and shapes first, on the meta device: an absurd config.json must not allocate anything
            check_weights_fit(read_config(path / "config.json"), path / "model.safetensors")
            model = INTERNet.from_pretrained(path, device=device)
        except CheckpointError as error:
            raise InputError(str(error)) from None
        return cls(model, device)

    # ------------------------------------------------------------------------------------------ public
    def animate(
        self,
        source: str | os.PathLike | np.ndarray,
        driving: str | os.PathLike,
        options: AnimateOptions | None = None,
        outputs: OutputPaths | None = None,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
        keep_frames: bool = False,
        known_pose: KnownPose | None = None,
    ) -> AnimationResult:
        """Render every driving frame, streaming into ``outputs``; ``keep_frames`` also returns them.

        ``progress`` may raise to stop the render, as may setting ``cancel`` (raises :class:`Cancelled`);
        either way no output file is left behind. numpy's BLAS runs single-threaded meanwhile
        (:func:`internet.blas.single_threaded_blas`)."""
        with single_threaded_blas():
            return self._animate(source, driving, options, outputs, progress, cancel, keep_frames, known_pose)

    def _animate(self, source, driving, options, outputs, progress, cancel, keep_frames, known_pose) -> AnimationResult:
        options = options or AnimateOptions()
        outputs = outputs or OutputPaths()
        start = time.perf_counter()
        times = StageTimes()
        warnings: list[str] = []
        report = progress or (lambda p: None)

        def check_cancel() -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled("Render cancelled")

        source_rgb = _as_rgb(source)
        info = probe_video(driving)
        fps = options.fps or info.fps
        size = self._output_size(options, warnings)
        if options.max_seconds is not None and info.duration and info.duration > options.max_seconds + 0.5 / fps:
            warnings.append(
                f"The driving video lasts {info.duration:.1f} s; only the first {options.max_seconds:g} s are used"
            )
        if info.variable_frame_rate:
            warnings.append(f"Variable frame rate: resampled to a constant {fps:g} fps")
        if options.motion == "model" and options.background != "keep":
            warnings.append("--background applies to the pose rig only; the model keeps the source background")

        # (--reference auto with --motion model --center-crop looks for no person: the first frame is the reference)
        explicit_best = options.wants_best_frame and options.reference == "best"
        need_people = options.motion == "pose-rig" or not options.centre_crop or explicit_best
        t0 = time.perf_counter()
        if known_pose is not None:
            source_marks = _SourceMarks(known_pose.source, 1.0)
        else:
            source_marks = self._photos.detect(source_rgb) if need_people else None
        times.pose += time.perf_counter() - t0
        if need_people and source_marks is None:
            if options.motion == "pose-rig":
                raise InputError("No person found in the photo: the pose rig needs a person in full view")
            raise InputError(
                "No person found in the photo; to use a centre crop with --motion model, add --center-crop"
            )

        # Pass 2 needs the driving pixels only for the temporal meter: spool them small in pass 1 (decode once).
        # The spools are unlinked temporary files: closed by pass 2, or with the track if anything fails first.
        meter_only = options.motion == "pose-rig" and outputs.side_by_side is None and outputs.overlays is None
        spool_side = SPOOL_SIDE * meter_resolution(size) if meter_only and not keep_frames else None
        track = self._analyse(
            info, fps, options, source_marks, need_people, known_pose, times, report, check_cancel, spool_side
        )
        if need_people and track.framing is None:
            if options.motion == "pose-rig":
                raise InputError("No person found in the driving video: the pose rig needs a person in view")
            raise InputError(
                "No person found in the driving video; to use a centre crop with --motion model, add --center-crop"
            )
        if track.framing is not None and track.framing.found < track.count:
            warnings.append(f"No person found in {track.count - track.framing.found} of {track.count} driving frames")
        if explicit_best and track.framing is None:
            warnings.append("--best-frame needs a person in the video; using the first frame")

        crop = centre_crop(info.width, info.height) if options.centre_crop or track.framing is None else (
            track.framing.crop)  # fmt: skip
        best = options.wants_best_frame and track.best_frame is not None
        reference = track.best_index if best else 0
        extent = None
        if options.motion == "pose-rig" and source_marks is not None:
            extent = _animated_extent(source_marks.points, track, reference, _rig_mode(options))
        framed_source, source_landmarks = _frame_source(source_rgb, source_marks, track.framing, options, size, extent)
        motion = self._motion_source(framed_source, source_landmarks, options, fps)
        if best:
            analysis_crop = crop.scaled(1.0 / track.scale)
            motion.set_reference(
                analysis_crop.apply(track.best_frame, size), _landmarks_at(track, reference, crop, size)
            )

        result = AnimationResult(
            outputs=outputs, frame_count=track.count, fps=fps, size=size,
            has_audio=info.has_audio and outputs.video is not None, source=framed_source, crop=crop,
            reference_index=reference, warp_error=np.full(track.count, np.nan, np.float32), warnings=warnings,
            times=times, driving_joints=track.points,
        )  # fmt: skip
        self._render(info, fps, options, crop, track, motion, result, report, check_cancel, keep_frames)
        times.total = time.perf_counter() - start
        return result

    def preview(
        self,
        source: str | os.PathLike | np.ndarray,
        driving: str | os.PathLike,
        options: AnimateOptions | None = None,
        seconds: float = 3.0,
        size: int = 256,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> AnimationResult:
        """A fast first look: the first ``seconds`` at ``size``² (pose rig), frames kept in memory."""
        options = options or AnimateOptions()
        limit = seconds if options.max_seconds is None else min(seconds, options.max_seconds)
        quick = dataclasses.replace(options, size=size, max_seconds=limit)
        return self.animate(source, driving, quick, OutputPaths(), progress, cancel, keep_frames=True)

    # ------------------------------------------------------------------------------------------ stages
    def _output_size(self, options: AnimateOptions, warnings: list[str]) -> int:
        if options.motion == "pose-rig":
            return options.size
        if self.model is None:
            raise InputError("--motion model needs a checkpoint, and this server or Animator was started without one")
        size = self.model.config.image_size
        if options.size != size:
            warnings.append(f"The checkpoint renders at {size}²; --size {options.size} is ignored")
        return size

    def _motion_source(self, source: np.ndarray, landmarks, options: AnimateOptions, fps: float) -> MotionSource:
        if options.motion == "model":
            from internet.model_source import ModelSource  # torch: imported only when the model renders

            return ModelSource(self.model, source, options.relative)
        return PoseRigSource(source, landmarks, _rig_mode(options), fps, options.background)

    def _analyse(
        self, info, fps, options, source_marks, need_people, known_pose, times, report, check_cancel, spool_side=None
    ) -> _DrivingTrack:
        """Pass 1: count frames, find the person in each, choose the crop and the best reference frame.

        With MediaPipe and ``self.parallel``, a long video is cut into ``ANALYSIS_SEGMENTS`` consecutive
        segments, each decoded and tracked by its own reader and tracker in its own thread (MediaPipe releases
        the GIL; two trackers alone run 1.7x as fast on 2 idle vCPUs). Each later segment's tracker starts with a
        detection ``SEGMENT_WARMUP`` frames before its segment (those results are dropped), so that its tracking
        has settled by the segment's first frame; the segments' readers give exactly the frames one reader gives
        (:class:`~internet.media.VideoReader`), and if they do not join up the video is tracked in one piece.
        This thread only waits, reports progress and checks for cancellation; callbacks never run on the workers.
        With ``spool_side``, every frame is also spooled grey with that long side (:class:`_GreySpool`, one per
        segment) for pass 2's temporal meter."""
        longest = max(info.width, info.height)
        analysis = (info.width, info.height)
        if longest > ANALYSIS_SIDE:
            analysis = (_even(info.width * ANALYSIS_SIDE / longest), _even(info.height * ANALYSIS_SIDE / longest))
        scale = info.width / analysis[0]  # analysis pixels -> video pixels
        total = _expected_frames(info, fps, options.max_seconds)
        use_mediapipe = need_people and known_pose is None
        segments_wanted = ANALYSIS_SEGMENTS if self.parallel else 1
        parts = 1
        if use_mediapipe and total >= segments_wanted * MIN_SEGMENT_FRAMES + (segments_wanted - 1) * SEGMENT_WARMUP:
            parts = segments_wanted
        # Equal work per tracker: every later segment also tracks its warm-up frames, so it is that much shorter.
        length = (total + (parts - 1) * SEGMENT_WARMUP) / parts
        cuts = [0] + [round(i * length - (i - 1) * SEGMENT_WARMUP) for i in range(1, parts)]
        segments = [
            _Segment(start, (cuts[i + 1] - start) if i + 1 < parts else None, min(SEGMENT_WARMUP, start))
            for i, start in enumerate(cuts)
        ]
        spool_size = None
        if spool_side is not None:
            side = min(spool_side, max(analysis))
            spool_size = (_even(analysis[0] * side / max(analysis)), _even(analysis[1] * side / max(analysis)))
        stop = threading.Event()
        job = _AnalysisJob(info, fps, options, analysis, scale, use_mediapipe, known_pose, source_marks, stop)
        self._run_segments(job, segments, spool_size, total, report, check_cancel)
        if not _contiguous(segments):  # a segment ended before the next one began: track the video in one piece
            _close_spools(segments)
            segments = [_Segment(0, None)]
            job.stop = threading.Event()
            self._run_segments(job, segments, spool_size, total, report, check_cancel)
        for segment in segments:
            times.decode += segment.decode_seconds
            times.pose += segment.pose_seconds
        points = [p for segment in segments for p in segment.points]
        visibility = [v for segment in segments for v in segment.visibility]
        boxes = [b for segment in segments for b in segment.boxes]
        best = min((segment.best for segment in segments), key=lambda b: (b[0], b[1]))
        count = len(points)
        if count == 0:
            raise InputError(f"{info.path.name} has no frames")
        if count == 1:
            raise InputError(f"{info.path.name} has a single frame; a driving video needs at least two")
        framing = frame_video(boxes, options.margin, (info.width, info.height)) if need_people else None
        spools = [segment.spool for segment in segments if segment.spool is not None]
        return _DrivingTrack(count, points, visibility, framing, best[1], best[2], scale, spools)

    @staticmethod
    def _run_segments(job: _AnalysisJob, segments: list[_Segment], spool_size, total: int, report, check_cancel):
        """Analyse the segments in threads of their own; this thread reports progress and checks for cancel."""
        stop = job.stop
        if spool_size is not None:
            for segment in segments:
                segment.spool = _GreySpool(spool_size)
        workers = [threading.Thread(target=job.run, args=(segment,), daemon=True) for segment in segments]
        for worker in workers:
            worker.start()
        reported = 0
        try:
            while any(worker.is_alive() for worker in workers):
                workers[-1].join(timeout=0.05)
                check_cancel()
                done = sum(segment.done for segment in segments)
                if done != reported:
                    reported = done
                    report(Progress("analyse", done, max(total, done)))
        finally:
            stop.set()
            for worker in workers:
                worker.join()
        for segment in segments:
            if segment.error is not None:
                _close_spools(segments)
                raise segment.error

    def _render(self, info, fps, options, crop, track, motion, result, report, check_cancel, keep_frames) -> None:
        """Pass 2: crop, animate, encode; every output is aborted if anything fails."""
        size, times, outputs = result.size, result.times, result.outputs
        meter = WarpErrorMeter(resolution=meter_resolution(size))
        # The driving frame at full size is shown (side-by-side, overlays, previews) or fed to the model; the pose
        # rig alone only needs it for the temporal meter: then pass 1 spooled it small and grey (track.spools),
        # and it is cropped at the meter's size (the meter's value moves by resampling only).
        driving_size = meter.resolution if track.spools else size
        audio = info.path if info.has_audio else None
        with contextlib.ExitStack() as stack:
            writers = []
            video = sbs = panel = anchors = None
            if outputs.video is not None:
                video = stack.enter_context(VideoWriter(outputs.video, fps, (size, size), audio_from=audio))
                writers.append(video)
            if outputs.side_by_side is not None:
                sbs = stack.enter_context(
                    VideoWriter(outputs.side_by_side, fps, (3 * size, size), audio_from=audio, **DIAGNOSTIC_ENCODING)
                )
                writers.append(sbs)
            if outputs.overlays is not None:
                tile = max(64, size // 2)
                panel = stack.enter_context(
                    VideoWriter(outputs.overlays, fps, (4 * tile, 2 * tile), **DIAGNOSTIC_ENCODING)
                )
                writers.append(panel)
            if outputs.anchors_json is not None:
                meta = {"fps": fps, "size": size, "motion": options.motion, "relative": options.relative,
                        "reference": options.reference if options.relative else None,
                        "reference_index": result.reference_index, "frames": track.count,
                        "coordinates": "[-1, 1], x then y, align_corners=True"}  # fmt: skip
                anchors = stack.enter_context(AnchorsJsonWriter(outputs.anchors_json, meta))
            for spool in track.spools:
                stack.callback(spool.close)
            if track.spools:  # no second decode: the grey frames pass 1 spooled
                reader = itertools.chain.from_iterable(spool.frames() for spool in track.spools)
                decode_crop = crop.scaled(track.spools[0].size[0] / info.width)
            else:
                # ffmpeg scales the frame so that the crop comes out at its output size: cutting it out is then a
                # slice (OpenCV's area resize by a non-integer factor cost 6 ms per 512² frame; ffmpeg's scaling
                # rides along with its colour conversion for free).
                factor = min(1.0, driving_size / crop.side)
                decode_size = (_even(info.width * factor), _even(info.height * factor))
                decode_crop = crop.scaled(decode_size[0] / info.width)
                if factor < 1.0 and abs(decode_crop.side - driving_size) <= 1:  # _even's rounding: stay a slice
                    decode_crop = dataclasses.replace(decode_crop, side=driving_size)
                reader = stack.enter_context(
                    VideoReader(info, fps=fps, max_seconds=options.max_seconds, size=decode_size)
                )
            producer = stack.enter_context(
                _RenderThread(reader, decode_crop, driving_size, motion, track, crop, size, times, self.parallel)
            )
            count = 0
            for index, driving, output, frame_motion in producer.frames(check_cancel):
                frame = FrameResult(index=index, output=output, driving=driving, motion=frame_motion)
                t0 = time.perf_counter()
                error = meter.update(driving, output, frame_motion.confidence)
                result.warp_error[index] = error.mean
                side = side_by_side(result.source, driving, output) if sbs is not None else None
                tiles = overlay_panel(frame, result.source, error.map, tile=tile) if panel else None
                times.overlays += time.perf_counter() - t0

                t0 = time.perf_counter()
                if video is not None:
                    video.write(output)
                if side is not None:
                    sbs.write(side)
                if tiles is not None:
                    panel.write(tiles)
                if anchors is not None:
                    anchors.write(frame, error.mean)
                times.encode += time.perf_counter() - t0
                if keep_frames:
                    result.frames.append(frame)
                count = index + 1
                report(Progress("render", count, track.count))
            t0 = time.perf_counter()
            for writer in writers:  # finish encoding inside the stack: a failure here still aborts the rest
                writer.close()
            times.encode += time.perf_counter() - t0
        result.frame_count = count
        result.warp_error = result.warp_error[:count]


class _RenderThread:
    """Pass 2's producer: decode, crop and animate each frame in a thread of its own, so that the caller's
    thread (temporal meter, overlays, handing frames to the encoders, callbacks) works on frame i while
    frame i + 1 renders. Frames come out in order; an error in the thread is raised in the caller's.
    ``threaded=False`` does the same work inline (the sequential reference of the benchmark)."""

    _DEPTH = 2  # rendered frames waiting for the caller

    def __init__(self, reader, decode_crop: Crop, driving_size: int, motion: MotionSource, track: _DrivingTrack,
                 crop: Crop, size: int, times: StageTimes, threaded: bool = True) -> None:  # fmt: skip
        self._reader, self._decode_crop, self._driving_size, self._motion = reader, decode_crop, driving_size, motion
        self._track, self._crop, self._size, self._times = track, crop, size, times
        self._queue: queue.Queue = queue.Queue(maxsize=self._DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True) if threaded else None
        if self._thread is not None:
            self._thread.start()

    def _produce(self):
        times, motion = self._times, self._motion
        for index in range(self._track.count):
            t0 = time.perf_counter()
            raw = next(self._reader, None)
            times.decode += time.perf_counter() - t0
            if raw is None or self._stop.is_set():
                return
            t0 = time.perf_counter()
            driving = self._decode_crop.apply(raw, self._driving_size)
            output, frame_motion = motion.render(driving, _landmarks_at(self._track, index, self._crop, self._size))
            times.render += time.perf_counter() - t0 - (motion.motion_seconds - times.motion)
            times.motion = motion.motion_seconds
            yield index, driving, output, frame_motion

    def _run(self) -> None:
        try:
            for item in self._produce():
                self._put(item)
            self._put(None)
        except BaseException as error:  # raised again in the caller's thread
            self._put(error)

    def _put(self, item) -> None:
        put_unless_stopped(self._queue, item, self._stop)

    def frames(self, check_cancel: Callable[[], None]):
        """Yield (index, driving, output, motion) in order until the video ends."""
        if self._thread is None:
            for item in self._produce():
                check_cancel()
                yield item
            return
        while True:
            check_cancel()
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __enter__(self) -> _RenderThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class _GreySpool:
    """Grey, downscaled copies of pass 1's frames in an unlinked temporary file, read back in order by pass 2
    when nothing but the temporal meter looks at the driving pixels: the video is decoded once instead of
    twice (about 11 CPU ms per 692x1108 frame of H.264 here), and memory stays flat (the frames are on disk,
    size[0] * size[1] bytes each)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size  # (w, h)
        self.count = 0
        self._file = tempfile.TemporaryFile(prefix="internet-spool-")  # noqa: SIM115 - lives across both passes

    def append(self, rgb: np.ndarray) -> None:
        import cv2

        small = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        self._file.write(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).tobytes())
        self.count += 1

    def frames(self):
        """The spooled frames, (h, w) uint8, in the order they were appended."""
        w, h = self.size
        self._file.flush()
        self._file.seek(0)
        for _ in range(self.count):
            data = self._file.read(w * h)
            if len(data) < w * h:
                return
            yield np.frombuffer(data, np.uint8).reshape(h, w)

    def close(self) -> None:
        self._file.close()


def _as_rgb(source: str | os.PathLike | np.ndarray) -> np.ndarray:
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3 or source.dtype != np.uint8:
            raise InputError("The source image must be an RGB uint8 array")
        return source
    return load_image(source)


class _PhotoPoses:
    """MediaPipe's result for the last few photos, by their pixels. The app renders the same photo again and
    again (a preview, then the render; one garment, many videos), and each detection costs a MediaPipe graph
    and 0.2 s. The cached arrays are read-only, so no caller can change them for the next render."""

    CAPACITY = 4

    def __init__(self) -> None:
        self._entries: collections.OrderedDict[bytes, _SourceMarks] = collections.OrderedDict()
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> _SourceMarks | None:
        rgb = np.ascontiguousarray(rgb)
        digest = hashlib.blake2b(repr((rgb.shape, rgb.dtype.str)).encode(), digest_size=16)
        digest.update(rgb.data)
        key = digest.digest()
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        marks = _detect_source(rgb)
        if marks is not None:
            for array in (marks.landmarks.points, marks.landmarks.visibility, marks.landmarks.mask):
                if array is not None:
                    array.flags.writeable = False
            with self._lock:
                self._entries[key] = marks
                while len(self._entries) > self.CAPACITY:
                    self._entries.popitem(last=False)
        return marks


def _detect_source(rgb: np.ndarray):
    """MediaPipe on the photo (downscaled to ANALYSIS_SIDE); landmarks and mask at that scale, and the scale."""
    from internet.poserig import MediaPipeProvider

    h, w = rgb.shape[:2]
    scale = max(h, w) / ANALYSIS_SIDE if max(h, w) > ANALYSIS_SIDE else 1.0
    small = rgb if scale == 1.0 else _resize(rgb, (_even(w / scale), _even(h / scale)))
    scale = w / small.shape[1]
    with MediaPipeProvider(static_image_mode=True) as provider:
        marks = provider.detect(small)
    if marks is None:
        return None
    return _SourceMarks(Landmarks(marks.points * scale, marks.visibility, marks.mask), scale)


@dataclass
class _SourceMarks:
    """Source landmarks in photo pixels; the mask stays at analysis scale (``mask_scale`` photo px per px)."""

    landmarks: Landmarks
    mask_scale: float

    @property
    def points(self) -> np.ndarray:
        return self.landmarks.points

    @property
    def visibility(self) -> np.ndarray:
        return self.landmarks.visibility


def _rig_mode(options: AnimateOptions) -> str:
    return "absolute" if not options.relative else "auto" if options.reference == "auto" else "relative"


FIGURE_PAD = 0.3  # past the outermost joints (nose, wrists, ankles) the figure reaches this many torso lengths
FIT_MARGIN = 0.03  # and the output keeps this fraction of its side free around the whole figure


def _animated_extent(source: np.ndarray, track: _DrivingTrack, reference: int, mode: str) -> Box | None:
    """The box (photo pixels) that the animated figure covers over the whole clip: the photo's joints
    retargeted to every driving frame (as the rig will, unsmoothed), ``FIGURE_PAD`` torso lengths around them
    for the head, hands and feet. ``None`` when the driver is never seen."""
    from internet.poserig.retarget import retarget, torso_length

    ref = track.points[reference] if reference < track.count else None
    if ref is None:
        ref = next((p for p in track.points if p is not None), None)
    if ref is None:
        return None
    poses = [source] + [retarget(source, p, ref, mode) for p in track.points if p is not None]
    joints = np.concatenate(poses)
    pad = FIGURE_PAD * torso_length(source)
    (x0, y0), (x1, y1) = joints.min(axis=0) - pad, joints.max(axis=0) + pad
    return Box(float(x0), float(y0), float(x1), float(y1))


def _frame_source(
    rgb, marks: _SourceMarks | None, framing: VideoFraming | None, options: AnimateOptions, size: int,
    extent: Box | None = None,
):  # fmt: skip
    """Crop the photo like the driver and move its landmarks (and mask) into the crop; with ``extent`` (the
    animated figure's box over the clip, photo pixels), the crop grows or moves as little as it must to hold
    it (:func:`~internet.framing.fit_crop`)."""
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


def _landmarks_at(track: _DrivingTrack, index: int, crop: Crop, size: int) -> Landmarks | None:
    if index >= track.count or track.points[index] is None:
        return None
    return Landmarks(crop.to_crop(track.points[index], size), track.visibility[index])


def _close_spools(segments: list[_Segment]) -> None:
    for segment in segments:
        if segment.spool is not None:
            segment.spool.close()


def _contiguous(segments: list[_Segment]) -> bool:
    """Whether the segments' frames join up: every segment but the last read all of its frames, or nothing
    follows it."""
    for i, segment in enumerate(segments[:-1]):
        short = segment.limit is not None and len(segment.points) < segment.limit
        if short and any(later.points for later in segments[i + 1 :]):
            return False
    return True


def _expected_frames(info: VideoInfo, fps: float, max_seconds: float | None) -> int:
    duration = info.duration or info.frame_count / max(info.fps, 1e-6)
    if max_seconds is not None:
        duration = min(duration, max_seconds)
    return max(1, round(duration * fps))


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
