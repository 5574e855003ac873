"""The app's component groups (settings, inspection panel, render outputs), built inside the caller's layout.

Each function creates its components where it is called (inside ``gr.Blocks``) and returns them in a small
dataclass, so ``app.py`` reads as the page's structure and its wiring.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from internet.app.settings import MODES, SIZES, Settings, StudioLimits
from internet.app.views import CONFIDENCE_LEVELS
from internet.pipeline import MOTION_SOURCES
from internet.sources.base import BACKGROUNDS

INSPECTION_TITLES = (
    "Source + anchors",
    "Driving + anchors",
    "Confidence Mⁱ",
    "Soft weights ω",
    "Flow",
    "Output",
)


@dataclass
class SettingsInputs:
    """The settings accordion's widgets, in the order of :class:`~internet.app.settings.Settings`."""

    motion_source: gr.Radio
    size: gr.Radio
    mode: gr.Radio
    best_frame: gr.Checkbox
    max_seconds: gr.Slider
    fps: gr.Slider
    keep_audio: gr.Checkbox
    background: gr.Radio

    def as_list(self) -> list[gr.components.Component]:
        return [
            self.motion_source,
            self.size,
            self.mode,
            self.best_frame,
            self.max_seconds,
            self.fps,
            self.keep_audio,
            self.background,
        ]


def settings_accordion(limits: StudioLimits, has_model: bool) -> SettingsInputs:
    """Motion source (the model only with a checkpoint), size, relative/absolute, best frame, length, fps,
    audio and background, with sensible defaults."""
    default = Settings()
    if has_model:
        sources, info = list(MOTION_SOURCES), "model: the INTERNet checkpoint (renders at its own size)"
    else:
        sources, info = [MOTION_SOURCES[0]], "No model checkpoint is bundled: the training-free pose rig is used"
    with gr.Accordion("Settings", open=False, elem_id="settings"):
        with gr.Row():
            motion_source = gr.Radio(sources, value=default.motion_source, label="Motion source", info=info)
            size = gr.Radio(list(SIZES), value=default.size, label="Output size (px)", elem_id="size")
        with gr.Row():
            mode = gr.Radio(
                list(MODES),
                value=default.mode,
                label="Motion",
                info="relative: follow the driver's changes; absolute: copy its pose",
            )
            background = gr.Radio(list(BACKGROUNDS), value=default.background, label="Background")
        with gr.Row():
            seconds = gr.Slider(
                1,
                limits.max_seconds,
                value=min(default.max_seconds, limits.max_seconds),
                step=1,
                label="Max seconds",
                elem_id="max-seconds",
            )
            fps = gr.Slider(
                0, 60, value=default.fps, step=1, label="Frame rate", info="0: the video's own", elem_id="fps"
            )
        with gr.Row():
            best = gr.Checkbox(
                default.best_frame,
                label="Best-frame alignment",
                info="start from the driving frame closest to the photo's pose",
            )
            audio = gr.Checkbox(default.keep_audio, label="Keep the driving video's audio")
    return SettingsInputs(motion_source, size, mode, best, seconds, fps, audio, background)


@dataclass
class InspectionPanel:
    """Preview video, frame slider, toggles and the six inspection tiles."""

    video: gr.Video
    frame: gr.Slider
    anchors: gr.Checkbox
    level: gr.Radio
    export: gr.Button
    tiles: list[gr.Image]
    exported: gr.File


def inspection_panel(preview_seconds: float) -> InspectionPanel:
    video = gr.Video(
        label=f"Preview (first {preview_seconds:g} s, 256²)",
        height=256,
        autoplay=True,
        loop=True,
        elem_id="preview-video",
    )
    frame = gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False, elem_id="frame")
    with gr.Row(equal_height=False):
        anchors = gr.Checkbox(True, label="Anchors + Jacobian axes", scale=1)
        level = gr.Radio(list(CONFIDENCE_LEVELS), value="M² (full)", label="Confidence scale", scale=2)
        export = gr.Button("Export overlays", size="sm", scale=1, elem_id="export-btn")
    tiles = []
    for row in range(2):
        with gr.Row():
            tiles += [
                gr.Image(label=title, height=200, interactive=False, elem_classes="tile", buttons=["download"])
                for title in INSPECTION_TITLES[3 * row : 3 * row + 3]
            ]
    exported = gr.File(label="Overlays PNG + anchors JSON", file_count="multiple", visible=False, elem_id="exported")
    return InspectionPanel(video, frame, anchors, level, export, tiles, exported)


@dataclass
class RenderOutputs:
    """What a render shows: the result, side-by-side and overlays videos and the downloads."""

    result: gr.Video
    side_by_side: gr.Video
    overlays: gr.Video
    downloads: gr.File

    def as_list(self) -> list[gr.components.Component]:
        return [self.result, self.side_by_side, self.overlays, self.downloads]


def render_outputs() -> RenderOutputs:
    result = gr.Video(label="Result (with the driving video's audio)", height=360, elem_id="result-video")
    with gr.Row():
        side = gr.Video(label="Source | driving | result", elem_id="sbs-video")
        overlays = gr.Video(label="Overlays: anchors, confidence, weights, flow, warp error")
    downloads = gr.File(label="Download: MP4 + anchors JSON", file_count="multiple", height=150, elem_id="downloads")
    return RenderOutputs(result, side, overlays, downloads)
