"""Pass 1: find the person in every driving frame, choose one crop for the clip and the reference frame.

Decodes at low resolution and runs MediaPipe Pose in tracking mode, keeping only the 13 joints and a box per
frame, so memory is flat in video length. A long video is tracked in consecutive segments side by side; with
``spool_side`` the frames are also spooled small and grey for pass 2 (:class:`~internet.pipeline.spool.GreySpool`).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from internet.errors import InputError
from internet.pipeline.options import AnimateOptions, Control
from internet.pipeline.photo import ANALYSIS_SIDE, SourceMarks
from internet.pipeline.poses import PoseFinder, Tracker
from internet.pipeline.spool import GreySpool
from internet.video.framing import Box, VideoFraming, even_size, frame_video
from internet.video.io import VideoInfo, VideoReader

ANALYSIS_SEGMENTS = 2  # with parallel analysis, pass 1 runs this many trackers side by side
MIN_SEGMENT_FRAMES = 16  # videos shorter than this per segment are tracked in one piece
# A later segment's tracker starts this many frames before its segment, and those frames' results are dropped:
# MediaPipe's tracking and landmark smoothing have settled by the segment's first frame, as one tracker's have
# (on the development clip, the largest joint difference to one tracker: 0.09 torso lengths without, 0.03 with).
SEGMENT_WARMUP = 16


@dataclass
class DrivingTrack:
    """Pass-1 result: per-frame joints in the video's pixels, and the framing."""

    count: int
    points: list[np.ndarray | None]  # (13, 2) per frame, None where nobody was found
    visibility: list[np.ndarray | None]
    framing: VideoFraming | None
    best_index: int
    best_frame: np.ndarray | None  # the best-frame candidate at analysis resolution
    scale: float  # analysis pixels -> video pixels
    spools: list[GreySpool] = field(default_factory=list)  # per segment, in order; empty when not spooled


@dataclass
class Segment:
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
    spool: GreySpool | None = None


@dataclass
class AnalysisJob:
    """What every pass-1 worker shares; :meth:`run` analyses one segment in the calling thread."""

    info: VideoInfo
    fps: float
    options: AnimateOptions
    analysis: tuple[int, int]  # decode size (w, h)
    scale: float  # analysis pixels -> video pixels
    poses: PoseFinder | None  # None: nobody to find (a centre crop, the first frame as the reference)
    source_marks: SourceMarks | None
    stop: threading.Event

    def run(self, segment: Segment) -> None:
        try:
            with contextlib.ExitStack() as stack:
                tracker = None if self.poses is None else stack.enter_context(self.poses.tracker(self.scale))
                limit = None if segment.limit is None else segment.limit + segment.warmup
                reader = stack.enter_context(VideoReader(
                    self.info, fps=self.fps, max_seconds=self.options.max_seconds, size=self.analysis,
                    start_frame=segment.start - segment.warmup, max_frames=limit,
                ))  # fmt: skip
                self._track(segment, reader, tracker)
        except BaseException as error:  # handed to the waiting thread, which raises it
            segment.error = error

    def _track(self, segment: Segment, reader: VideoReader, tracker: Tracker | None) -> None:
        from internet.sources.poserig.retarget import pose_distance

        warmup, index = segment.warmup, segment.start - segment.warmup - 1
        while not self.stop.is_set():
            t0 = time.perf_counter()
            frame = next(reader, None)
            segment.decode_seconds += time.perf_counter() - t0
            if frame is None:
                break
            index += 1
            t0 = time.perf_counter()
            seen = None if tracker is None else tracker.find(frame, index)
            segment.pose_seconds += time.perf_counter() - t0
            if warmup > 0:  # settles the tracker; the previous segment keeps this frame
                warmup -= 1
                continue
            if segment.spool is not None:
                segment.spool.append(frame)
            segment.points.append(None if seen is None else seen.landmarks.points)
            segment.visibility.append(None if seen is None else seen.landmarks.visibility)
            segment.boxes.append(None if seen is None else seen.box)
            if seen is not None and self.options.wants_best_frame and self.source_marks is not None:
                distance = pose_distance(self.source_marks.landmarks, seen.landmarks)
                if distance < segment.best[0]:
                    segment.best = (distance, index, frame.copy())
            segment.done += 1


def analyse(
    info: VideoInfo, fps: float, options: AnimateOptions, source_marks: SourceMarks | None,
    poses: PoseFinder | None, parallel: bool, control: Control, spool_side: int | None = None,
) -> DrivingTrack:
    """Pass 1: count frames, find the person in each (``poses``; None: nobody to find), choose the crop and the
    best reference frame.

    With a pose finder that allows it (MediaPipe) and ``parallel``, a long video is cut into
    ``ANALYSIS_SEGMENTS`` consecutive segments, each decoded and tracked by its own reader and tracker in its own
    thread (MediaPipe releases the GIL; two trackers alone run 1.7x as fast on 2 idle vCPUs). Each later
    segment's tracker starts ``SEGMENT_WARMUP`` frames before its segment (those results are dropped), so that
    its tracking has settled by the segment's first frame; the segments' readers give exactly the frames one
    reader gives (:class:`~internet.video.io.VideoReader`), and if they do not join up the video is tracked in
    one piece. This thread only waits, reports progress and checks for cancellation; callbacks never run on the
    workers. With ``spool_side``, every frame is also spooled grey with that long side (:class:`GreySpool`, one
    per segment) for pass 2's temporal meter."""
    longest = max(info.width, info.height)
    analysis = (info.width, info.height)
    if longest > ANALYSIS_SIDE:
        analysis = (even_size(info.width * ANALYSIS_SIDE / longest), even_size(info.height * ANALYSIS_SIDE / longest))
    scale = info.width / analysis[0]  # analysis pixels -> video pixels
    total = _expected_frames(info, fps, options.max_seconds)
    segments_wanted = ANALYSIS_SEGMENTS if parallel else 1
    parts = 1
    long_enough = total >= segments_wanted * MIN_SEGMENT_FRAMES + (segments_wanted - 1) * SEGMENT_WARMUP
    if poses is not None and poses.segmentable and long_enough:
        parts = segments_wanted
    # Equal work per tracker: every later segment also tracks its warm-up frames, so it is that much shorter.
    length = (total + (parts - 1) * SEGMENT_WARMUP) / parts
    cuts = [0] + [round(i * length - (i - 1) * SEGMENT_WARMUP) for i in range(1, parts)]
    segments = [
        Segment(start, (cuts[i + 1] - start) if i + 1 < parts else None, min(SEGMENT_WARMUP, start))
        for i, start in enumerate(cuts)
    ]
    spool_size = None
    if spool_side is not None:
        side = min(spool_side, max(analysis))
        spool_size = (even_size(analysis[0] * side / max(analysis)), even_size(analysis[1] * side / max(analysis)))
    stop = threading.Event()
    job = AnalysisJob(info, fps, options, analysis, scale, poses, source_marks, stop)
    _run_segments(job, segments, spool_size, total, control)
    if not _contiguous(segments):  # a segment ended before the next one began: track the video in one piece
        _close_spools(segments)
        segments = [Segment(0, None)]
        job.stop = threading.Event()
        _run_segments(job, segments, spool_size, total, control)
    for segment in segments:  # the workers' times, reported from this thread
        control.spent("decode", segment.decode_seconds)
        control.spent("pose", segment.pose_seconds)
    points = [p for segment in segments for p in segment.points]
    visibility = [v for segment in segments for v in segment.visibility]
    boxes = [b for segment in segments for b in segment.boxes]
    best = min((segment.best for segment in segments), key=lambda b: (b[0], b[1]))
    count = len(points)
    if count == 0:
        raise InputError(f"{info.path.name} has no frames")
    if count == 1:
        raise InputError(f"{info.path.name} has a single frame; a driving video needs at least two")
    framing = frame_video(boxes, options.margin, (info.width, info.height)) if poses else None
    spools = [segment.spool for segment in segments if segment.spool is not None]
    return DrivingTrack(count, points, visibility, framing, best[1], best[2], scale, spools)

def _run_segments(job: AnalysisJob, segments: list[Segment], spool_size, total: int, control: Control) -> None:
    """Analyse the segments in threads of their own; this thread reports progress and checks for cancel."""
    stop = job.stop
    if spool_size is not None:
        for segment in segments:
            segment.spool = GreySpool(spool_size)
    workers = [threading.Thread(target=job.run, args=(segment,), daemon=True) for segment in segments]
    for worker in workers:
        worker.start()
    reported = 0
    try:
        while any(worker.is_alive() for worker in workers):
            workers[-1].join(timeout=0.05)
            control.check()
            done = sum(segment.done for segment in segments)
            if done != reported:
                reported = done
                control.report("analyse", done, max(total, done))
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    for segment in segments:
        if segment.error is not None:
            _close_spools(segments)
            raise segment.error


def _close_spools(segments: list[Segment]) -> None:
    for segment in segments:
        if segment.spool is not None:
            segment.spool.close()


def _contiguous(segments: list[Segment]) -> bool:
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
