"""Pass 2's outputs: the result, side-by-side and overlay videos and the anchors JSON, opened together, fed
frame by frame, and finished (or, on any failure, aborted) together."""

from __future__ import annotations

import contextlib
import time

import numpy as np

from internet.pipeline.options import Control, OutputPaths
from internet.pipeline.plan import RenderPlan
from internet.sources.frames import FrameResult
from internet.video.anchors_json import AnchorsJsonWriter
from internet.video.io import VideoWriter
from internet.video.overlays import overlay_panel, side_by_side

# The side-by-side and overlay videos are for looking at, not for keeping: x264 ultrafast takes 0.55x superfast's CPU
# (7.7 vs 13.8 ms per 1536x512 frame) for ~1.4x the bytes at the same crf, with no lower PSNR. The result video keeps
# VideoWriter's default (veryfast, crf 18).
DIAGNOSTIC_ENCODING = {"preset": "ultrafast", "crf": 23}


class OutputWriters:
    """The files of ``outputs`` that are set; each one is aborted by ``stack`` if the render fails. The time
    spent composing views ("overlays") and encoding ("encode") goes to ``control``."""

    def __init__(self, stack: contextlib.ExitStack, plan: RenderPlan, outputs: OutputPaths, control: Control):
        size, fps, options = plan.size, plan.fps, plan.options
        audio = plan.video.path if plan.video.has_audio else None
        self._source, self._control = plan.source, control
        self._writers: list = []
        self.video = self.side_by_side = self.panel = self.anchors = None
        self.tile = max(64, size // 2)
        if outputs.video is not None:
            self.video = self._open(stack, VideoWriter(outputs.video, fps, (size, size), audio_from=audio))
        if outputs.side_by_side is not None:
            self.side_by_side = self._open(stack, VideoWriter(
                outputs.side_by_side, fps, (3 * size, size), audio_from=audio, **DIAGNOSTIC_ENCODING
            ))  # fmt: skip
        if outputs.overlays is not None:
            self.panel = self._open(stack, VideoWriter(
                outputs.overlays, fps, (4 * self.tile, 2 * self.tile), **DIAGNOSTIC_ENCODING
            ))  # fmt: skip
        if outputs.anchors_json is not None:
            meta = {"fps": fps, "size": size, "motion": options.motion_source, "relative": options.relative,
                    "reference": options.reference if options.relative else None,
                    "reference_index": plan.reference_index, "frames": plan.track.count,
                    "coordinates": "[-1, 1], x then y, align_corners=True"}  # fmt: skip
            self.anchors = stack.enter_context(AnchorsJsonWriter(outputs.anchors_json, meta))

    def _open(self, stack: contextlib.ExitStack, writer: VideoWriter) -> VideoWriter:
        self._writers.append(stack.enter_context(writer))
        return writer

    def write(self, frame: FrameResult, warp_error: float, error_map: np.ndarray) -> None:
        """Compose the diagnostic views of one frame and hand everything to the encoders."""
        t0 = time.perf_counter()
        side = side_by_side(self._source, frame.driving, frame.output) if self.side_by_side else None
        tiles = overlay_panel(frame, self._source, error_map, tile=self.tile) if self.panel else None
        t1 = time.perf_counter()
        self._control.spent("overlays", t1 - t0)
        if self.video is not None:
            self.video.write(frame.output)
        if side is not None:
            self.side_by_side.write(side)
        if tiles is not None:
            self.panel.write(tiles)
        if self.anchors is not None:
            self.anchors.write(frame, warp_error)
        self._control.spent("encode", time.perf_counter() - t1)

    def finish(self) -> None:
        """Finish encoding, inside the stack: a failure here still aborts the rest."""
        t0 = time.perf_counter()
        for writer in self._writers:
            writer.close()
        self._control.spent("encode", time.perf_counter() - t0)
