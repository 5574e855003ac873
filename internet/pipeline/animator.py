"""Video in, frames and overlays out: ``Animator.animate(source_image, driving_video, options) -> AnimationResult``.

Two passes over the driving video, both streamed (memory is flat in video length):

1. *analyse* (:mod:`internet.pipeline.analysis`): decode at low resolution, find the person in every frame,
   choose one fixed crop for the whole video and the relative-motion reference frame;
2. *plan* (:mod:`internet.pipeline.plan`): frame the photo like the driver, all decisions in one
   :class:`~internet.pipeline.plan.RenderPlan`;
3. *render* (:mod:`internet.pipeline.render`): decode again (or read pass 1's grey spool), crop every frame, run
   the motion source, and hand the frames to the outputs (:mod:`internet.pipeline.outputs`) as they come.

Outputs appear under their final names only when everything succeeded; a cancelled or failed render
leaves nothing behind (:class:`~internet.video.atomic.AtomicWriter`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np

from internet.errors import InputError
from internet.pipeline.analysis import analyse
from internet.pipeline.loading import load_checkpoint
from internet.pipeline.options import (
    PREVIEW_SECONDS,
    PREVIEW_SIZE,
    AnimateOptions,
    AnimationResult,
    Control,
    OutputPaths,
    Progress,
    TimeSpent,
)
from internet.pipeline.photo import as_rgb
from internet.pipeline.plan import RenderPlan, check_person, needs_people, plan_render, video_warnings
from internet.pipeline.poses import MediaPipePoses, PoseFinder
from internet.pipeline.render import render
from internet.sources.base import MotionSource
from internet.sources.rig import PoseRigSource
from internet.speedups.blas import single_threaded_blas
from internet.video.io import VideoInfo, probe_video
from internet.video.temporal import meter_resolution

SPOOL_SIDE = 3  # long side of the spooled grey frames, in temporal-meter resolutions (crops keep >= 1 of them)
PARALLEL_MIN_CPUS = 2  # Animator(parallel=None) uses a second CPU from this many CPUs on


class Animator:
    """Animate a photo with a driving video through either motion source; reusable across calls."""

    def __init__(
        self, model=None, device: str = "cpu", parallel: bool | None = None, poses: PoseFinder | None = None
    ) -> None:
        """``model``: an INTERNet used as given (:meth:`for_inference` makes the fast inference copy first),
        or ``None`` for the pose rig only.

        ``parallel``: whether a render uses a second CPU: two MediaPipe trackers side by side in pass 1, and
        pass 2's decoding and motion source in a thread of their own beside the meter and the encoders (the
        gain on 2 vCPUs: docs/performance.md). ``None`` (the default) turns it on with 2 or more CPUs. Turn it
        off where the other CPUs are busy anyway (several renders at once, a host shared with other work), or
        where the joints must be one tracker's throughout: the outputs differ only where the second tracker
        starts.

        ``poses``: where landmarks come from (a :class:`~internet.pipeline.poses.PoseFinder`; default:
        MediaPipe; :class:`~internet.pipeline.poses.KnownPose` for joints known in advance)."""
        self.model = model
        self.device = device
        self.parallel = (os.cpu_count() or 1) >= PARALLEL_MIN_CPUS if parallel is None else parallel
        self.poses = poses or MediaPipePoses()

    @classmethod
    def for_inference(cls, model, device: str = "cpu", parallel: bool | None = None) -> Animator:
        """An Animator on the inference copy of ``model`` (channels-last, sub-pixel, pre-packed:
        :func:`internet.speedups.inference_copy.inference_copy`); ``model`` itself is not changed."""
        from internet.speedups.inference_copy import inference_copy

        return cls(inference_copy(model), device, parallel)

    @classmethod
    def from_pretrained(cls, checkpoint: str | os.PathLike | None, device: str = "cpu") -> Animator:
        """``None``: pose rig only. ``"default"``: the committed checkpoint. Otherwise a checkpoint folder."""
        if checkpoint is None:
            return cls(None, device)
        return cls.for_inference(load_checkpoint(checkpoint, device), device)

    def animate(
        self,
        source: str | os.PathLike | np.ndarray,
        driving: str | os.PathLike | VideoInfo,
        options: AnimateOptions | None = None,
        outputs: OutputPaths | None = None,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
        keep_frames: bool = False,
        timing: Callable[[TimeSpent], None] | None = None,
    ) -> AnimationResult:
        """Render every driving frame, streaming into ``outputs``; ``keep_frames`` also returns them.

        ``driving`` may be an already probed video. ``progress`` may raise to stop the render, as may setting
        ``cancel`` (raises :class:`~internet.pipeline.options.Cancelled`); either way no output file is left
        behind. ``timing`` receives the seconds spent per stage as they are measured
        (:class:`~internet.pipeline.options.TimeSpent`: where a render's time goes, for profiling). numpy's
        BLAS runs single-threaded meanwhile (:func:`internet.speedups.blas.single_threaded_blas`)."""
        options, outputs = options or AnimateOptions(), outputs or OutputPaths()
        control = Control(progress, cancel, timing)
        with single_threaded_blas():
            plan = self._plan(as_rgb(source), driving, options, outputs, control, keep_frames)
            return render(plan, self._motion_source(plan), outputs, control, keep_frames, self.parallel)

    def preview(
        self,
        source: str | os.PathLike | np.ndarray,
        driving: str | os.PathLike | VideoInfo,
        options: AnimateOptions | None = None,
        seconds: float = PREVIEW_SECONDS,
        size: int = PREVIEW_SIZE,
        progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None,
        outputs: OutputPaths | None = None,
    ) -> AnimationResult:
        """A fast first look: the first ``seconds`` at ``size``² (:meth:`AnimateOptions.preview`), frames kept."""
        quick = (options or AnimateOptions()).preview(seconds, size)
        return self.animate(source, driving, quick, outputs, progress, cancel, keep_frames=True)

    def _plan(self, photo, driving, options, outputs, control, keep_frames) -> RenderPlan:
        """Probe, find the person in the photo, run pass 1 and decide the render."""
        info = driving if isinstance(driving, VideoInfo) else probe_video(driving)
        fps = options.fps or info.fps
        warnings: list[str] = []
        size = self._output_size(options, warnings)
        warnings += video_warnings(info, options, fps)
        need_people = needs_people(options)
        poses = self.poses if need_people else None
        t0 = time.perf_counter()
        source_marks = None if poses is None else poses.photo(photo)
        control.spent("pose", time.perf_counter() - t0)
        if need_people:
            check_person(source_marks is not None, "the photo", options)
        # Pass 2 needs the driving pixels only for the temporal meter: spool them small in pass 1 (decode once).
        # The spools are unlinked temporary files: closed by pass 2, or with the track if anything fails first.
        meter_only = options.motion_source == "pose-rig" and outputs.side_by_side is None and outputs.overlays is None
        spool_side = SPOOL_SIDE * meter_resolution(size) if meter_only and not keep_frames else None
        track = analyse(info, fps, options, source_marks, poses, self.parallel, control, spool_side)
        return plan_render(photo, info, options, fps, size, source_marks, track, warnings)

    def _output_size(self, options: AnimateOptions, warnings: list[str]) -> int:
        if options.motion_source == "pose-rig":
            return options.size
        if self.model is None:
            raise InputError("--motion model needs a checkpoint, and this server or Animator was started without one")
        size = self.model.config.image_size
        if options.size != size:
            warnings.append(f"The checkpoint renders at {size}²; --size {options.size} is ignored")
        return size

    def _motion_source(self, plan: RenderPlan) -> MotionSource:
        options = plan.options
        if options.motion_source == "model":
            from internet.sources.model import ModelSource  # torch: imported only when the model renders

            motion_source = ModelSource(self.model, plan.source, options.relative)
        else:
            motion_source = PoseRigSource(
                plan.source, plan.source_landmarks, options.rig_mode, plan.fps, options.background
            )
        if plan.reference_frame is not None:
            motion_source.set_reference(plan.reference_frame, plan.landmarks_at(plan.reference_index))
        return motion_source
