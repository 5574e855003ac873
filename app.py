"""INTERNet studio: animate a full-body photo with the motion of a driving video (a Gradio app / HF Space).

Run ``python app.py`` (host and port: ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``; limits: the
``INTERNET_*`` variables in :mod:`internet.app.settings`). All the work lives in :mod:`internet.app.studio`.
"""

from __future__ import annotations

import os
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from internet.speedups.memory import enable_huge_pages, limit_malloc_arenas, retain_freed_memory  # noqa: E402

enable_huge_pages()  # torch reads this once, at its first tensor: before anything imports it

import gradio as gr  # noqa: E402

from internet.app.layout import inspection_panel, render_outputs, settings_accordion  # noqa: E402
from internet.app.settings import StudioLimits  # noqa: E402
from internet.app.studio import EXAMPLES, Studio  # noqa: E402

DESCRIPTION = """# INTERNet studio
Animate a **full-body photo** with the motion of a **driving video**. Pick a runway photo and a clip (or
upload your own), **Preview** the first seconds at 256² and inspect the anchors, confidence map, soft
weights and flow frame by frame, then **Render** at full resolution. A from-scratch implementation of
*Intrinsic Temporal Regularization for High-resolution Human Video Synthesis* (INTERNet).
"""
DIAGNOSTICS = """Temporal warp error: consecutive outputs compared after removing the driver's own motion
(optical flow), weighted by the confidence map M. Flicker shows as spikes and hot spots."""
CSS = ".tile img { object-fit: contain; } #status { min-height: 2em; }"
THEME = gr.themes.Soft(
    font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
)
PRIVATE = {"api_visibility": "private"}  # UI-only events: not part of the named API
QUICK = {**PRIVATE, "show_progress": "hidden", "trigger_mode": "always_last", "concurrency_limit": None}


def build_demo(studio: Studio | None = None) -> gr.Blocks:
    """The page; ``studio`` (default: from the environment) holds the Animator shared by every request."""
    studio = studio or Studio.from_limits(StudioLimits.from_env())
    limits = studio.limits
    with gr.Blocks(
        title="INTERNet studio", delete_cache=(limits.cache_seconds, limits.cache_seconds)
    ) as demo:
        gr.Markdown(DESCRIPTION)
        preview_state = gr.State(None, time_to_live=limits.cache_seconds)
        render_state = gr.State(None, time_to_live=limits.cache_seconds)
        with gr.Tab("Animate"), gr.Row(equal_height=False):
            with gr.Column(scale=4):
                with gr.Row(equal_height=True):
                    source = gr.Image(label="Runway photo", type="filepath", height=300, elem_id="source")
                    driving = gr.Video(
                        label="Driving video", sources=["upload"], height=300, elem_id="driving"
                    )
                examples(source, driving)
                settings = settings_accordion(limits, studio.has_model)
                with gr.Row():
                    preview_btn = gr.Button("Preview", elem_id="preview-btn")
                    render_btn = gr.Button("Render", variant="primary", elem_id="render-btn")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
                status = gr.Markdown(label="Status", elem_id="status")
            with gr.Column(scale=5), gr.Tabs() as out_tabs:
                with gr.Tab("Preview & inspection", id="preview"):
                    panel = inspection_panel(limits.preview_seconds)
                with gr.Tab("Render", id="render"):
                    rendered = render_outputs()
        with gr.Tab("Diagnostics"):
            plot, diag_frame, heat = diagnostics_tab(studio.model_card())

        inputs = [source, driving, *settings.as_list()]
        inspect_io = ([preview_state, panel.frame, panel.anchors, panel.level], panel.tiles)
        diag_io = ([preview_state, render_state, diag_frame], [plot, heat, diag_frame])
        preview = preview_btn.click(
            lambda: gr.Tabs(selected="preview"), None, out_tabs, queue=False, **PRIVATE
        )
        preview = preview.then(
            studio.preview,
            inputs,
            [panel.video, preview_state, status],
            api_name="preview",
            concurrency_id="preview",
            concurrency_limit=limits.preview_concurrency,
            show_progress_on=panel.video,
        )
        slider = preview.success(studio.frame_slider, preview_state, panel.frame, **QUICK)
        slider.success(studio.inspect, *inspect_io, **QUICK).success(studio.diagnostics, *diag_io, **QUICK)
        render = render_btn.click(lambda: gr.Tabs(selected="render"), None, out_tabs, queue=False, **PRIVATE)
        render = render.then(
            studio.render,
            inputs,
            [*rendered.as_list(), status, render_state],
            api_name="render",
            concurrency_id="render",
            concurrency_limit=limits.render_concurrency,
            show_progress_on=rendered.result,
        )
        render.success(studio.diagnostics, *diag_io, **QUICK)
        cancel_btn.click(studio.cancel, None, None, queue=False, cancels=[preview, render], **PRIVATE)
        for control in (panel.frame, panel.anchors, panel.level):
            control.change(studio.inspect, *inspect_io, **QUICK)
        diag_frame.change(studio.diagnostics, *diag_io, **QUICK)
        panel.export.click(studio.export, [preview_state, panel.frame], panel.exported, **PRIVATE)
    return demo


def examples(source: gr.Image, driving: gr.Video) -> None:
    """The example photos and driving clips (``assets/examples``) under the two inputs."""
    with gr.Row():
        photos = sorted(EXAMPLES.glob("source_*.png")) + sorted(EXAMPLES.glob("runway_*.png"))
        gr.Examples(
            [[str(p)] for p in photos],
            [source],
            label="Example photos",
            examples_per_page=6,
            cache_examples=False,
            elem_id="photo-examples",
        )
        clips = sorted(EXAMPLES.glob("runway_*.mp4"))
        gr.Examples(
            [[str(c)] for c in clips], [driving], label="Example driving clips", cache_examples=False,
            elem_id="clip-examples",
        )  # fmt: skip


def diagnostics_tab(card: str) -> tuple[gr.LinePlot, gr.Slider, gr.Image]:
    """The warp-error plot, the preview frame's heatmap and its slider, and the model card."""
    gr.Markdown(DIAGNOSTICS)
    with gr.Row():
        plot = gr.LinePlot(x="frame", y="warp error", color="run", label="Warp error per frame", scale=3)
        with gr.Column(scale=2):
            frame = gr.Slider(0, 1, value=0, step=1, label="Preview frame", interactive=False)
            heat = gr.Image(label="Warp error × M over the output", height=256, interactive=False)
    with gr.Accordion("Model card", open=False):
        gr.Markdown(card)
    return plot, frame, heat


def warm_up() -> threading.Thread:
    """Import MediaPipe in a background thread while the server starts: otherwise the first user's preview
    pays its import (0.3 s; 1.2 s with the matplotlib it would drag in) on top of the render (docs/performance.md,
    cold vs warm)."""

    def load() -> None:
        from internet.sources.landmarks import preload_mediapipe

        preload_mediapipe()

    thread = threading.Thread(target=load, name="warm-up", daemon=True)
    thread.start()
    return thread


def launch(demo: gr.Blocks, limits: StudioLimits | None = None, **kwargs) -> tuple:
    """Queue with the server's limits and start serving (``kwargs`` go to ``Blocks.launch``)."""
    limit_malloc_arenas()  # a long-running server: keep RSS from creeping up render after render
    retain_freed_memory()  # 512² activations reused, not faulted in again every frame
    warm_up()
    limits = limits or StudioLimits.from_env()
    demo.queue(max_size=limits.max_queue, default_concurrency_limit=limits.render_concurrency)
    return demo.launch(max_file_size=limits.max_file_size, css=CSS, theme=THEME, **kwargs)


if __name__ == "__main__":
    launch(build_demo())
