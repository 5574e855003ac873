"""Pass 2: decode again (or read pass 1's spool), crop, run the motion source, measure and write each frame.

The driving frame at full size is shown (side-by-side, overlays, previews) or fed to the model; the pose rig
alone only needs it for the temporal meter: then pass 1 spooled it small and grey (``plan.track.spools``), and
it is cropped at the meter's size (the meter's value moves by resampling only). Every output is aborted if
anything fails (:class:`~internet.pipeline.outputs.OutputWriters`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import queue
import threading
import time

import numpy as np

from internet.pipeline.options import AnimationResult, Control, OutputPaths
from internet.pipeline.outputs import OutputWriters
from internet.pipeline.plan import RenderPlan
from internet.sources.base import MotionSource
from internet.sources.frames import FrameResult
from internet.video.framing import Crop, even_size
from internet.video.io import VideoReader, put_unless_stopped
from internet.video.temporal import WarpErrorMeter, meter_resolution


def render(
    plan: RenderPlan, motion_source: MotionSource, outputs: OutputPaths, control: Control,
    keep_frames: bool = False, threaded: bool = True,
) -> AnimationResult:  # fmt: skip
    """Render every frame of ``plan`` through ``motion_source`` into ``outputs``; ``keep_frames`` also returns
    them. ``threaded``: decode and render in a thread of their own (:class:`RenderThread`)."""
    track, size = plan.track, plan.size
    meter = WarpErrorMeter(resolution=meter_resolution(size))
    result = AnimationResult(
        outputs=outputs, frame_count=track.count, fps=plan.fps, size=size,
        has_audio=plan.video.has_audio and outputs.video is not None, source=plan.source, crop=plan.crop,
        reference_index=plan.reference_index, warp_error=np.full(track.count, np.nan, np.float32),
        warnings=plan.warnings, driving_joints=track.points,
    )  # fmt: skip
    driving_size = meter.resolution if track.spools else size
    count = 0
    with contextlib.ExitStack() as stack:
        writers = OutputWriters(stack, plan, outputs, control)
        reader, decode_crop = _driving_frames(stack, plan, driving_size)
        producer = stack.enter_context(
            RenderThread(reader, decode_crop, driving_size, motion_source, plan, control, threaded)
        )
        for index, driving, output, frame_motion in producer.frames():
            frame = FrameResult(index=index, output=output, driving=driving, motion=frame_motion)
            t0 = time.perf_counter()
            error = meter.update(driving, output, frame_motion.confidence)
            result.warp_error[index] = error.mean
            control.spent("overlays", time.perf_counter() - t0)
            writers.write(frame, error.mean, error.map)
            if keep_frames:
                result.frames.append(frame)
            count = index + 1
            control.report("render", count, track.count)
        writers.finish()
    result.frame_count = count
    result.warp_error = result.warp_error[:count]
    return result


def _driving_frames(stack: contextlib.ExitStack, plan: RenderPlan, driving_size: int):
    """The driving frames of pass 2 and the crop that cuts them to ``driving_size``²."""
    track, crop, info = plan.track, plan.crop, plan.video
    for spool in track.spools:
        stack.callback(spool.close)
    if track.spools:  # no second decode: the grey frames pass 1 spooled
        reader = itertools.chain.from_iterable(spool.frames() for spool in track.spools)
        return reader, crop.scaled(track.spools[0].size[0] / info.width)
    # ffmpeg scales the frame so that the crop comes out at its output size: cutting it out is then a slice
    # (OpenCV's area resize by a non-integer factor cost 6 ms per 512² frame; ffmpeg's scaling rides along with
    # its colour conversion for free).
    factor = min(1.0, driving_size / crop.side)
    decode_size = (even_size(info.width * factor), even_size(info.height * factor))
    decode_crop = crop.scaled(decode_size[0] / info.width)
    if factor < 1.0 and abs(decode_crop.side - driving_size) <= 1:  # even_size's rounding: stay a slice
        decode_crop = dataclasses.replace(decode_crop, side=driving_size)
    options = plan.options
    reader = stack.enter_context(VideoReader(info, fps=plan.fps, max_seconds=options.max_seconds, size=decode_size))
    return reader, decode_crop


class RenderThread:
    """Pass 2's producer: decode, crop and animate each frame in a thread of its own, so that the caller's
    thread (temporal meter, overlays, handing frames to the encoders, callbacks) works on frame i while
    frame i + 1 renders. Frames come out in order; an error in the thread is raised in the caller's. The
    thread's decode and render times go to ``control`` once it has stopped, from the caller's thread.
    ``threaded=False`` does the same work inline (``Animator(parallel=False)``)."""

    _DEPTH = 2  # rendered frames waiting for the caller

    def __init__(self, reader, decode_crop: Crop, driving_size: int, motion_source: MotionSource, plan: RenderPlan,
                 control: Control, threaded: bool = True) -> None:  # fmt: skip
        self._reader, self._decode_crop, self._driving_size = reader, decode_crop, driving_size
        self._motion_source, self._plan, self._control = motion_source, plan, control
        self._seconds = {"decode": 0.0, "render": 0.0}  # written by the thread, read once it has stopped
        self._queue: queue.Queue = queue.Queue(maxsize=self._DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True) if threaded else None
        if self._thread is not None:
            self._thread.start()

    def _produce(self):
        seconds, motion_source, plan = self._seconds, self._motion_source, self._plan
        for index in range(plan.track.count):
            t0 = time.perf_counter()
            raw = next(self._reader, None)
            seconds["decode"] += time.perf_counter() - t0
            if raw is None or self._stop.is_set():
                return
            t0 = time.perf_counter()
            driving = self._decode_crop.apply(raw, self._driving_size)
            output, frame_motion = motion_source.render(driving, plan.landmarks_at(index))
            seconds["render"] += time.perf_counter() - t0
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

    def frames(self):
        """Yield (index, driving, output, frame motion) in order until the video ends."""
        control = self._control
        if self._thread is None:
            for item in self._produce():
                control.check()
                yield item
            return
        while True:
            control.check()
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __enter__(self) -> RenderThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for stage, seconds in self._seconds.items():
            self._control.spent(stage, seconds)
