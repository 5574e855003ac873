"""The app in-process: the page builds, the handlers return files with the right frame counts, the inspection
and diagnostics agree with the pipeline, and every bad input is a ``gr.Error`` with one clear line."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from internet.app.settings import Settings, StudioLimits
from internet.app.studio import EXAMPLES, Studio, WorkFolders
from internet.app.views import CONFIDENCE_LEVELS
from internet.errors import InputError
from internet.pipeline import Animator
from internet.sources.frames import FrameMotion, confidence_level
from internet.video.io import read_video_stats
from tests.media_factory import make_video

PHOTO = str(EXAMPLES / "source_10000_09.png")
CLIP = str(EXAMPLES / "runway_10000_00.mp4")
FPS, SECONDS = 10, 1.0
# motion, size, mode, best_frame, max_seconds, fps, keep_audio, background
QUICK = ["pose-rig", 256, "relative", False, SECONDS, FPS, True, "keep"]


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    limits = StudioLimits(max_seconds=20, preview_seconds=SECONDS)
    return Studio(Animator(None), limits, work_root=tmp_path_factory.mktemp("work"))


@pytest.fixture(scope="module")
def preview(studio):
    return studio.preview(PHOTO, CLIP, *QUICK)


def test_build_demo_builds_with_and_without_a_model(studio):
    import app

    demo = app.build_demo(studio)
    assert isinstance(demo, gr.Blocks)
    names = {d.api_name for d in demo.fns.values() if d.api_visibility == "public"}
    assert {"preview", "render"} <= names
    radios = [b for b in demo.blocks.values() if isinstance(b, gr.Radio) and b.label == "Motion source"]
    assert [c[1] for c in radios[0].choices] == ["pose-rig"]  # no checkpoint: the model is not offered
    assert "No model checkpoint" in studio.model_card()


def test_preview_returns_a_low_resolution_video_and_the_frames(studio, preview):
    video, session, summary = preview
    slider = studio.frame_slider(session)
    info, count = read_video_stats(video)
    expected = round(SECONDS * FPS)
    assert count == expected == len(session.frames) and (info.width, info.height) == (256, 256)
    assert slider.maximum == expected - 1 and slider.interactive
    assert f"{expected} frames" in summary
    assert "only the first" not in summary  # a preview is short by design, not worth a warning


def test_inspection_tiles_follow_the_frame_and_the_toggles(studio, preview):
    session = preview[1]
    plain = studio.inspect(session, 3, False, "M² (full)")
    marked = studio.inspect(session, 3, True, "M² (full)")
    assert len(plain) == 6 and all(t.shape == (256, 256, 3) and t.dtype == np.uint8 for t in plain)
    np.testing.assert_array_equal(plain[5], session.frames[3].output)  # no anchors: the output frame itself
    np.testing.assert_array_equal(plain[0], session.source)
    assert not np.array_equal(marked[0], plain[0]) and not np.array_equal(marked[1], plain[1])
    other = studio.inspect(session, 8, False, "M² (full)")
    np.testing.assert_array_equal(other[5], session.frames[8].output)
    assert studio.inspect(None, 0, True, "M² (full)") == (None,) * 6


def _motion(confidence: np.ndarray, levels: tuple[np.ndarray, ...] = ()) -> FrameMotion:
    k = np.zeros((10, 2), np.float32)
    jac = np.tile(np.eye(2, dtype=np.float32), (10, 1, 1))
    weights, flow = np.zeros((11, 4, 4), np.float32), np.zeros((4, 4, 2), np.float32)
    return FrameMotion(k, k, jac, jac, weights, flow, confidence, levels)


def test_confidence_levels_are_a_2x_pyramid():
    rng = np.random.default_rng(0)
    m = rng.random((64, 64)).astype(np.float32)
    single = _motion(m)  # the pose rig keeps one map
    sides = [confidence_level(single, level, 256).shape[0] for level in CONFIDENCE_LEVELS.values()]
    assert sides == [64, 128, 256]
    np.testing.assert_allclose(confidence_level(single, 0, 256), m)  # the stored map is M^0 for a 256² rig render
    assert confidence_level(single, 2, 256).mean() == pytest.approx(m.mean(), abs=0.01)
    pyramid = tuple(rng.random((s, s)).astype(np.float32) for s in (64, 128, 256))
    with_levels = _motion(pyramid[-1], pyramid)  # the model's own levels are shown as they are
    assert all(confidence_level(with_levels, i, 256) is pyramid[i] for i in range(3))


def test_diagnostics_match_the_pipeline_warp_error(studio, preview):
    session = preview[1]
    _, _, _, _, _, render_series = studio.render(PHOTO, CLIP, *QUICK)
    table, heat, slider = studio.diagnostics(session, render_series, 4)
    runs = table.groupby("run")["warp error"].apply(list)
    # The preview's maps are recomputed in the app; at the same size they must reproduce the render's means.
    np.testing.assert_allclose(runs["preview"], runs["render"], rtol=1e-4)
    assert len(runs["render"]) == round(SECONDS * FPS) - 1  # frame 0 has no predecessor
    assert heat.shape == (256, 256, 3) and slider.value == 4 and slider.minimum == 1
    weighted = session.warp_maps[4]
    assert float(weighted.mean()) > 0 and np.isfinite(session.warp_error[1:]).all()


def test_render_returns_every_output(studio):
    result, side, overlays, downloads, summary, series = studio.render(PHOTO, CLIP, *QUICK)
    count = round(SECONDS * FPS)
    assert read_video_stats(result)[1] == count
    info, side_count = read_video_stats(side)
    assert side_count == count and info.width == 3 * info.height == 3 * 256
    assert read_video_stats(overlays)[1] == count
    assert [p.rsplit("/", 1)[-1] for p in downloads] == ["result.mp4", "anchors.json"]
    assert len(json.loads(Path(downloads[1]).read_text())["frames"]) == count
    assert len(series.values) == count and "no audio" in summary
    assert "only the first 1 s" in summary  # the pipeline's warning reaches the page


def test_export_writes_the_panel_png_and_the_anchors(studio, preview):
    session = preview[1]
    update = studio.export(session, 5)
    png, anchors = [f["path"] if isinstance(f, dict) else f for f in update.value]
    assert update.visible
    assert Image.open(png).size == (4 * 256, 2 * 256)
    data = json.loads(Path(anchors).read_text())
    assert data["meta"]["selected_frame"] == 5 and len(data["frames"]) == len(session.frames)
    np.testing.assert_allclose(
        data["frames"][5]["anchors_driving"], session.frames[5].motion.anchors_driving, atol=1e-4
    )
    with pytest.raises(gr.Error, match="preview first"):
        studio.export(None, 0)


def _bad_inputs(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 80, 3), 200, np.uint8)).save(blank)
    nobody = make_video(tmp_path / "pattern.mp4", 96, 64, frames=6, fps=10)
    return [
        ((None, CLIP, *QUICK), "Add a photo"),
        ((PHOTO, None, *QUICK), "Add a driving video"),
        ((PHOTO, str(text), *QUICK), "notes.mp4 is not a video"),
        ((str(text), CLIP, *QUICK), "not a readable image"),
        ((str(blank), CLIP, *QUICK), "No person found in the photo"),
        ((PHOTO, str(nobody), *QUICK), "No person found in the driving video"),
        ((PHOTO, CLIP, "model", *QUICK[1:]), "needs a checkpoint"),
        ((PHOTO, CLIP, "pose-rig", 300, *QUICK[2:]), "256 or 512"),
        ((PHOTO, CLIP, *QUICK[:4], -1, *QUICK[5:]), "positive"),
        ((PHOTO, CLIP, *QUICK[:5], 500, *QUICK[6:]), "frame rate"),
        ((PHOTO, CLIP, *QUICK[:7], "purple"), "Unknown background"),
    ]


@pytest.mark.parametrize("handler", ["preview", "render"])
def test_bad_inputs_raise_gr_error(studio, handler, tmp_path):
    for args, message in _bad_inputs(tmp_path):
        with pytest.raises(gr.Error, match=message) as error:
            getattr(studio, handler)(*args)
        assert "\n" not in str(error.value) and "Traceback" not in str(error.value)


def test_settings_clamp_to_the_server_limit():
    warnings: list[str] = []
    options = Settings(max_seconds=120).options(StudioLimits(max_seconds=30), warnings)
    assert options.max_seconds == 30 and "at most 30 s" in warnings[0]
    assert Settings(fps=0).options(StudioLimits(), []).fps is None  # 0: keep the video's rate


def test_limits_come_from_the_environment():
    limits = StudioLimits.from_env(
        {"INTERNET_MAX_SECONDS": "12", "INTERNET_MAX_QUEUE": "3", "INTERNET_MAX_FILE_SIZE": "5mb"}
    )
    assert (limits.max_seconds, limits.max_queue, limits.max_file_size) == (12.0, 3, "5mb")
    with pytest.raises(ValueError, match="INTERNET_MAX_QUEUE"):
        StudioLimits.from_env({"INTERNET_MAX_QUEUE": "many"})


def test_cancel_stops_a_render_and_writes_nothing(studio, tmp_path):
    """Cancel arrives from another thread (as from the Cancel button) while the render runs."""
    started = threading.Event()

    def progress(p):
        started.set()
        if p.stage == "render" and p.done == 2:
            assert studio.cancels.cancel("user-1")

    settings = Settings(size=256, max_seconds=SECONDS, fps=FPS)
    with pytest.raises(gr.Error, match="cancelled"):
        studio.render_files(PHOTO, CLIP, settings, session="user-1", progress=progress)
    assert started.is_set()
    leftovers = [p for p in studio.folders.root.rglob("result.mp4") if "user-1" in str(p)]
    assert leftovers == []
    assert not studio.cancels.cancel("user-1")  # nothing running any more


def test_work_folders_are_per_request_and_swept(tmp_path):
    folders = WorkFolders(tmp_path / "work", max_age=0)
    with folders.new("a") as first, folders.new("a") as second:
        assert first != second and first.is_dir() and second.is_dir()
        folders.sweep()
        assert first.is_dir()  # active folders are never swept
    folders.sweep()
    assert not first.exists() and not second.exists()


@pytest.fixture(scope="module")
def model_studio(tmp_path_factory) -> Studio:
    import torch

    from internet import INTERNet, load_config

    torch.manual_seed(0)
    folder = INTERNet(load_config("tiny")).save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")
    limits = StudioLimits(preview_seconds=SECONDS)
    return Studio(Animator.from_pretrained(folder), limits, folder, tmp_path_factory.mktemp("work"))


def test_a_checkpoint_enables_model_motion_and_its_card(model_studio):
    import app

    demo = app.build_demo(model_studio)
    radio = next(b for b in demo.blocks.values() if isinstance(b, gr.Radio) and b.label == "Motion source")
    assert [c[1] for c in radio.choices] == ["pose-rig", "model"]
    card = model_studio.model_card()
    assert "preset `tiny`" in card and "M params" in card
    video, session, summary = model_studio.preview(PHOTO, CLIP, "model", *QUICK[1:])
    size = model_studio.animator.model.config.image_size
    info, count = read_video_stats(video)
    assert count == round(SECONDS * FPS) and (info.width, info.height) == (size, size)
    assert session.size == size and all(
        t.shape == (size, size, 3) for t in model_studio.inspect(session, 2, True, "M⁰ (1/4)")
    )
    assert f"renders at {size}²" in summary


def test_from_limits_loads_the_named_checkpoint_once(model_studio, tmp_path):
    none = Studio.from_limits(StudioLimits(checkpoint="none"))
    assert not none.has_model and none.checkpoint is None
    named = Studio.from_limits(StudioLimits(checkpoint=str(model_studio.checkpoint)))
    assert named.has_model and named.animator.model.config.name == "tiny"
    with pytest.raises(InputError, match="not a checkpoint folder"):
        Studio.from_limits(StudioLimits(checkpoint=str(tmp_path)))


def test_the_server_warms_mediapipe_up_in_the_background():
    """``app.launch`` starts a thread that imports MediaPipe, which nothing else imports before a render."""
    import subprocess
    import sys

    code = (
        "import sys, app; before = 'mediapipe' in sys.modules; t = app.warm_up(); t.join(120); "
        "print(before, 'mediapipe' in sys.modules, t.is_alive())"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True", "False"]
