"""The app's logic: gradio handlers that call the :class:`~internet.pipeline.Animator` and turn its results
into what the components show. ``app.py`` only lays the components out and wires them to a :class:`Studio`.

- one Animator (and so one loaded checkpoint) is shared by every request;
- every request writes into its own folder under ``work_root`` (outputs never mix between users; see
  :mod:`internet.app.requests`); folders
  older than ``limits.cache_seconds`` are swept, while gradio deletes its own copies (``delete_cache``);
- bad input (:class:`~internet.errors.InputError`) becomes ``gr.Error`` with the pipeline's one-line message,
  pipeline warnings become ``gr.Warning``; an unexpected failure is logged and shown as one polite line;
- Cancel sets a per-session event that the pipeline checks between frames, so the CPU is freed at once.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from internet.app.requests import CancelEvents, WorkFolders, for_people, request_inputs, session_of
from internet.app.settings import Settings, StudioLimits
from internet.app.views import (
    CONFIDENCE_LEVELS,
    PreviewSession,
    WarpErrorSeries,
    export_frame,
    inspection_images,
    model_card,
    warp_error_image,
    warp_error_table,
)
from internet.pipeline import AnimateOptions, Animator, OutputPaths, Progress, default_checkpoint
from internet.video.io import VideoInfo

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"


@dataclass
class RenderFiles:
    """What a render hands back to the page (paths inside the request's folder)."""

    video: Path
    side_by_side: Path
    overlays: Path
    anchors_json: Path
    warp_error: WarpErrorSeries
    summary: str


@dataclass
class Job:
    """One request's preview or render, its inputs checked (:meth:`Studio._job`)."""

    folder: Path  # the request's own folder
    cancel: threading.Event
    options: AnimateOptions
    photo: str
    video: VideoInfo
    warnings: list[str]  # the settings' warnings; the render's are added


class Studio:
    """Everything the page does, as methods gradio can call (inputs in the order of the components)."""

    def __init__(
        self,
        animator: Animator,
        limits: StudioLimits | None = None,
        checkpoint: Path | None = None,
        work_root: Path | None = None,
    ) -> None:
        self.animator = animator
        self.limits = limits or StudioLimits()
        self.checkpoint = checkpoint
        root = work_root or Path(tempfile.gettempdir()) / "internet-studio"
        self.folders = WorkFolders(root, self.limits.cache_seconds)
        self.cancels = CancelEvents()

    @classmethod
    def from_limits(cls, limits: StudioLimits) -> Studio:
        """Load the checkpoint named by ``limits.checkpoint`` once ("default": the committed one, if any)."""
        name = limits.checkpoint.strip()
        path = None if name.lower() == "none" else default_checkpoint() if name == "default" else Path(name)
        animator = Animator.from_pretrained(path, device=limits.device) if path else Animator(None, limits.device)
        return cls(animator, limits, path)

    @property
    def has_model(self) -> bool:
        return self.animator.model is not None

    def model_card(self) -> str:
        return model_card(self.checkpoint, self.animator.model)

    # ------------------------------------------------------------------------------------------ handlers
    def preview(
        self,
        source: str | None,
        driving: str | None,
        motion: str = "pose-rig",
        size: int = 512,
        mode: str = "relative",
        best_frame: bool = False,
        max_seconds: float = 10.0,
        fps: float = 0.0,
        keep_audio: bool = True,
        background: str = "keep",
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects the real tracker here
    ) -> tuple[str, PreviewSession, str]:
        """A low-resolution pass over the first seconds: (preview video, session, summary)."""
        settings = Settings(motion, size, mode, best_frame, max_seconds, fps, keep_audio, background)
        with self._job("preview", session_of(request), settings, source, driving) as job:
            outputs = OutputPaths(video=job.folder / "preview.mp4")
            limits = self.limits
            result = self.animator.preview(
                job.photo, job.video, job.options, limits.preview_seconds, limits.preview_size,
                _reporter(progress, "Preview"), job.cancel, outputs,
            )  # fmt: skip
            warnings = job.warnings
            preview = PreviewSession.from_frames(result.source, result.frames, result.fps, job.options.motion_source)
            warnings += [w for w in result.warnings if "only the first" not in w]  # a preview is always short
            _warn(warnings)
            summary = _summary("Preview", result.frame_count, result.size, result.fps, result.has_audio, warnings)
            return str(outputs.video), preview, summary

    def render(
        self,
        source: str | None,
        driving: str | None,
        motion: str = "pose-rig",
        size: int = 512,
        mode: str = "relative",
        best_frame: bool = False,
        max_seconds: float = 10.0,
        fps: float = 0.0,
        keep_audio: bool = True,
        background: str = "keep",
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio injects the real tracker here
    ) -> tuple[str, str, str, list[str], str, WarpErrorSeries]:
        """Full resolution: (result, side-by-side, overlays, [MP4, anchors JSON], summary, warp error)."""
        files = self.render_files(
            source,
            driving,
            Settings(motion, size, mode, best_frame, max_seconds, fps, keep_audio, background),
            session_of(request),
            _reporter(progress, "Render"),
        )
        return (
            str(files.video),
            str(files.side_by_side),
            str(files.overlays),
            [str(files.video), str(files.anchors_json)],
            files.summary,
            files.warp_error,
        )

    def render_files(
        self,
        source: str | None,
        driving: str | None,
        settings: Settings,
        session: str = "local",
        progress: Callable[[Progress], None] | None = None,
    ) -> RenderFiles:
        """Render every output into a fresh folder (the typed core of :meth:`render`)."""
        with self._job("render", session, settings, source, driving) as job:
            folder, warnings = job.folder, job.warnings
            outputs = OutputPaths(
                folder / "result.mp4",
                folder / "side_by_side.mp4",
                folder / "overlays.mp4",
                folder / "anchors.json",
            )
            result = self.animator.animate(job.photo, job.video, job.options, outputs, progress, job.cancel)
            warnings += result.warnings
            _warn(warnings)
            summary = _summary("Render", result.frame_count, result.size, result.fps, result.has_audio, warnings)
            series = WarpErrorSeries("render", result.fps, result.warp_error)
            return RenderFiles(
                outputs.video, outputs.side_by_side, outputs.overlays, outputs.anchors_json, series, summary
            )

    @contextlib.contextmanager
    def _job(self, action: str, session: str, settings: Settings, source: str | None, driving: str | None):
        """One preview or render: failures as one line, a fresh folder, a cancel flag, the checked inputs."""
        with (
            for_people(action),
            self.folders.new(session) as folder,
            self.cancels.running(session) as cancel,
        ):
            warnings: list[str] = []
            options = settings.options(self.limits, warnings)
            photo, video = request_inputs(source, driving, settings.keep_audio, folder)
            yield Job(folder, cancel, options, photo, video, warnings)

    def cancel(self, request: gr.Request | None = None) -> None:
        """Stop this session's preview or render between two frames."""
        if self.cancels.cancel(session_of(request)):
            gr.Info("Cancelling…")

    def frame_slider(self, preview: PreviewSession | None) -> gr.Slider:
        """The inspection panel's frame slider, spanning a new preview."""
        if preview is None or not preview.frames:
            return gr.Slider(minimum=0, maximum=1, value=0, interactive=False)
        return gr.Slider(minimum=0, maximum=max(1, len(preview.frames) - 1), value=0, step=1, interactive=True)

    def inspect(
        self, preview: PreviewSession | None, index: float, anchors: bool, level: str
    ) -> tuple[np.ndarray | None, ...]:
        """The six inspection tiles of one preview frame (empty before the first preview)."""
        if preview is None or not preview.frames:
            return (None,) * 6
        return inspection_images(preview, int(index), bool(anchors), CONFIDENCE_LEVELS.get(level, 2)).as_tuple()

    def export(self, preview: PreviewSession | None, index: float, request: gr.Request | None = None) -> gr.File:
        """A file list with the PNG of the overlay panel at ``index`` and the preview's anchors JSON."""
        if preview is None or not preview.frames:
            raise gr.Error("Run a preview first, then export its overlays", print_exception=False)
        with self.folders.new(session_of(request)) as folder:
            return gr.File(value=[str(p) for p in export_frame(preview, int(index), folder)], visible=True)

    def diagnostics(self, preview: PreviewSession | None, render: WarpErrorSeries | None, index: float):
        """(warp error plot data, the chosen preview frame's warp-error heatmap, the frame slider).

        Frame 0 has no predecessor, so the slider starts at 1."""
        series = []
        if preview is not None and preview.frames:
            series.append(WarpErrorSeries("preview", preview.fps, preview.warp_error))
        if render is not None:
            series.append(render)
        if preview is None or len(preview.frames) < 2:
            return warp_error_table(series), None, gr.Slider()
        last = len(preview.frames) - 1
        index = int(np.clip(int(index), 1, last))
        slider = gr.Slider(minimum=1, maximum=max(2, last), step=1, value=index, interactive=True)
        return warp_error_table(series), warp_error_image(preview, index), slider

# ------------------------------------------------------------------------------------------ module helpers
def _reporter(progress: gr.Progress, what: str) -> Callable[[Progress], None]:
    """Map the pipeline's progress to gradio's bar: frames done / total, with an ETA per stage."""
    started: dict[str, float] = {}

    def report(p: Progress) -> None:
        start = started.setdefault(p.stage, time.perf_counter())
        stage = "finding the person" if p.stage == "analyse" else "rendering"
        desc = f"{what}: {stage}"
        if p.done and p.total > p.done:
            eta = (time.perf_counter() - start) / p.done * (p.total - p.done)
            desc += f", about {math.ceil(eta)} s left"
        progress((p.done, p.total), desc=desc, unit="frames")

    return report


def _warn(messages: list[str]) -> None:
    for message in messages:
        gr.Warning(message)


def _summary(what: str, frames: int, size: int, fps: float, audio: bool, warnings: list[str]) -> str:
    line = f"**{what}**: {frames} frames, {size}², {fps:g} fps, {'with' if audio else 'no'} audio."
    return "\n".join([line, *(f"- ⚠ {w}" for w in warnings)])


