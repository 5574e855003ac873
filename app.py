"""INTERNet studio: animate a full-body photo with the motion of a driving video (a Gradio app / HF Space).

Run ``python app.py`` (host and port: ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``; limits: the
``INTERNET_*`` variables in :mod:`internet.studio_settings`). All the work lives in :mod:`internet.studio`.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from internet.studio import EXAMPLES, Studio  # noqa: E402
from internet.studio_settings import BACKGROUNDS, MODES, SIZES, Settings, StudioLimits  # noqa: E402
from internet.studio_views import CONFIDENCE_LEVELS  # noqa: E402

DESCRIPTION = """# INTERNet studio
Animate a **full-body photo** with the motion of a **driving video**. Pick a runway photo and a clip (or
upload your own), **Preview** the first seconds at 256² and inspect the anchors, confidence map, soft
weights and flow frame by frame, then **Render** at full resolution. A from-scratch implementation of
*Intrinsic Temporal Regularization for High-resolution Human Video Synthesis* (INTERNet).
"""
CSS = ".tile img { object-fit: contain; } #status { min-height: 2em; } footer { display: none !important; }"


def build_demo(studio: Studio | None = None) -> gr.Blocks:
    """The page; ``studio`` (default: from the environment) holds the Animator shared by every request."""
    studio = studio or Studio.from_limits(StudioLimits.from_env())
    limits, default = studio.limits, Settings()
    motions = ["pose-rig", "model"] if studio.has_model else ["pose-rig"]
    motion_info = (
        "pose-rig: training-free, any photo; model: the INTERNet checkpoint (renders at its own size)"
        if studio.has_model
        else "No model checkpoint is bundled yet: the training-free pose rig is used"
    )
    ages = (limits.cache_seconds, limits.cache_seconds)
    with gr.Blocks(title="INTERNet studio", delete_cache=ages) as demo:
        gr.Markdown(DESCRIPTION)
        preview_state = gr.State(None, time_to_live=limits.cache_seconds)
        render_state = gr.State(None, time_to_live=limits.cache_seconds)
        with gr.Tab("Animate"), gr.Row(equal_height=False):
            with gr.Column(scale=4):
                with gr.Row(equal_height=True):
                    source = gr.Image(label="Runway photo", type="filepath", height=280, elem_id="source")
                    driving = gr.Video(
                        label="Driving video", sources=["upload"], height=280, elem_id="driving"
                    )
                with gr.Row():
                    photos = sorted(EXAMPLES.glob("source_*.png")) + sorted(EXAMPLES.glob("runway_*.png"))
                    gr.Examples(
                        [[str(p)] for p in photos],
                        [source],
                        label="Example photos",
                        cache_examples=False,
                        examples_per_page=6,
                    )
                    clips = sorted(EXAMPLES.glob("runway_*.mp4"))
                    gr.Examples(
                        [[str(c)] for c in clips],
                        [driving],
                        label="Example driving clips",
                        cache_examples=False,
                        elem_id="clip-examples",
                    )
                with gr.Accordion("Settings", open=False):
                    with gr.Row():
                        motion = gr.Radio(motions, value="pose-rig", label="Motion source", info=motion_info)
                        size = gr.Radio(list(SIZES), value=default.size, label="Output size (px)")
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
                        )
                        fps = gr.Slider(
                            0, 60, value=default.fps, step=1, label="Frame rate", info="0: the video's"
                        )
                    with gr.Row():
                        best = gr.Checkbox(
                            default.best_frame,
                            label="Best-frame alignment",
                            info="start from the driving frame closest to the photo's pose",
                        )
                        audio = gr.Checkbox(default.keep_audio, label="Keep the driving video's audio")
                with gr.Row():
                    preview_btn = gr.Button("Preview", variant="secondary", elem_id="preview-btn")
                    render_btn = gr.Button("Render", variant="primary", elem_id="render-btn")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=5), gr.Tabs() as out_tabs:
                with gr.Tab("Preview & inspection", id="preview"):
                    preview_video = gr.Video(
                        label="Preview (first seconds, 256²)",
                        height=256,
                        autoplay=True,
                        loop=True,
                        elem_id="preview-video",
                    )
                    frame = gr.Slider(
                        0, 1, value=0, step=1, label="Frame", interactive=False, elem_id="frame"
                    )
                    with gr.Row():
                        anchors = gr.Checkbox(True, label="Anchors + Jacobian axes")
                        level = gr.Radio(list(CONFIDENCE_LEVELS), value="M² (full)", label="Confidence scale")
                        export_btn = gr.Button("Export overlays", size="sm")
                    titles = [
                        "Source + anchors",
                        "Driving + anchors",
                        "Confidence M",
                        "Dominant soft weight",
                        "Flow",
                        "Output",
                    ]
                    tiles = []
                    for row in range(2):
                        with gr.Row():
                            tiles += [
                                gr.Image(
                                    label=t,
                                    height=180,
                                    interactive=False,
                                    elem_classes="tile",
                                    buttons=["download"],
                                )
                                for t in titles[3 * row : 3 * row + 3]
                            ]
                    exported = gr.File(label="Overlays PNG + anchors JSON", file_count="multiple")
                with gr.Tab("Render", id="render"):
                    result = gr.Video(label="Result (with audio)", elem_id="result-video")
                    with gr.Row():
                        sbs = gr.Video(label="Source | driving | result")
                        overlays = gr.Video(label="Overlays")
                    downloads = gr.File(label="Download MP4 + anchors JSON", file_count="multiple")
        with gr.Tab("Diagnostics"):
            gr.Markdown(
                "Temporal warp error: consecutive outputs compared after removing the driver's own motion "
                "(optical flow), weighted by the confidence map M. Flicker shows as spikes and hot spots."
            )
            plot = gr.LinePlot(
                x="frame", y="warp error", color="run", label="Warp error per frame", height=260
            )
            diag_frame = gr.Slider(0, 1, value=0, step=1, label="Preview frame", interactive=False)
            heat = gr.Image(label="Warp error × M over the output", height=256, interactive=False)
            with gr.Accordion("Model card", open=False):
                gr.Markdown(studio.model_card())

        settings = [motion, size, mode, best, seconds, fps, audio, background]
        diag_io = ([preview_state, render_state, diag_frame], [plot, heat, diag_frame])
        inspect_io = ([preview_state, frame, anchors, level], tiles)
        to_tab = {
            "preview": lambda: gr.Tabs(selected="preview"),
            "render": lambda: gr.Tabs(selected="render"),
        }
        preview_event = preview_btn.click(
            to_tab["preview"], None, out_tabs, queue=False, api_visibility="private"
        ).then(
            studio.preview,
            [source, driving, *settings],
            [preview_video, frame, preview_state, status],
            api_name="preview",
            concurrency_limit=limits.preview_concurrency,
            concurrency_id="preview",
        )
        preview_event.success(
            studio.inspect, *inspect_io, api_visibility="private", show_progress="hidden"
        ).success(studio.diagnostics, *diag_io, api_visibility="private")
        render_event = render_btn.click(
            to_tab["render"], None, out_tabs, queue=False, api_visibility="private"
        ).then(
            studio.render,
            [source, driving, *settings],
            [result, sbs, overlays, downloads, status, render_state],
            api_name="render",
            concurrency_limit=limits.render_concurrency,
            concurrency_id="render",
        )
        render_event.success(studio.diagnostics, *diag_io, api_visibility="private")
        cancel_btn.click(
            studio.cancel,
            None,
            None,
            queue=False,
            api_visibility="private",
            cancels=[preview_event, render_event],
        )
        for control in (frame, anchors, level):
            control.change(
                studio.inspect,
                *inspect_io,
                api_visibility="private",
                show_progress="hidden",
                trigger_mode="always_last",
                concurrency_limit=None,
            )
        diag_frame.change(
            studio.diagnostics,
            *diag_io,
            api_visibility="private",
            show_progress="hidden",
            trigger_mode="always_last",
            concurrency_limit=None,
        )
        export_btn.click(
            studio.export, [preview_state, frame], exported, api_visibility="private", concurrency_limit=None
        )
    return demo


def launch(demo: gr.Blocks, limits: StudioLimits | None = None, **kwargs) -> tuple:
    """Queue with the server's limits and start serving (``kwargs`` go to ``Blocks.launch``)."""
    limits = limits or StudioLimits.from_env()
    demo.queue(max_size=limits.max_queue, default_concurrency_limit=limits.render_concurrency)
    return demo.launch(max_file_size=limits.max_file_size, css=CSS, theme=gr.themes.Soft(), **kwargs)


if __name__ == "__main__":
    launch(build_demo())
