"""The app over HTTP on loopback: launch it, call the named ``preview`` and ``render`` endpoints with
gradio_client, decode what comes back (frames, size, fps, audio), and serve four clients at once."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from internet.video.io import read_video_stats
from tests.media_factory import ffmpeg

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
PHOTO = EXAMPLES / "source_10000_09.png"
CLIP = EXAMPLES / "runway_10000_02.mp4"
FPS, SECONDS = 10, 1.0  # 10 frames per run keeps the suite fast
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import app
    from internet.app.settings import StudioLimits
    from internet.app.studio import Studio
    from internet.pipeline import Animator

    limits = StudioLimits(preview_concurrency=2, render_concurrency=1, max_queue=8, max_file_size="1mb")
    work = tmp_path_factory.mktemp("work")
    demo = app.build_demo(Studio(Animator(None), limits, work_root=work))
    _, url, _ = app.launch(
        demo, limits, server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True
    )
    yield url
    demo.close()


@pytest.fixture(scope="module")
def clip_with_audio(tmp_path_factory) -> Path:
    """An example clip with a sine soundtrack (the examples are silent)."""
    path = tmp_path_factory.mktemp("clip") / "runway with audio.mp4"
    ffmpeg(
        "-i",
        str(CLIP),
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=16000",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-shortest",
        str(path),
    )
    return path


def _settings(size: int = 256, keep_audio: bool = True) -> list:
    # motion, size, mode, best_frame, max_seconds, fps, keep_audio, background
    return ["pose-rig", size, "relative", False, SECONDS, FPS, keep_audio, "keep"]


def test_only_preview_and_render_are_named_endpoints(server):
    api = Client(server, verbose=False).view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/preview", "/render"}
    names = [p["parameter_name"] for p in api["named_endpoints"]["/render"]["parameters"]]
    assert names[:2] == ["source", "driving"] and "max_seconds" in names and "keep_audio" in names


def test_preview_returns_the_first_frames_at_low_resolution(server):
    client = Client(server, verbose=False)
    video, summary = client.predict(
        handle_file(str(PHOTO)), handle_file(str(CLIP)), *_settings(size=512), api_name="/preview"
    )
    info, count = read_video_stats(video)
    assert count == round(SECONDS * FPS) and (info.width, info.height) == (256, 256)  # previews are 256²
    assert f"{count} frames" in summary


def test_render_returns_the_video_with_audio_and_the_downloads(server, clip_with_audio):
    client = Client(server, verbose=False)
    result, side, overlays, downloads, summary = client.predict(
        handle_file(str(PHOTO)), handle_file(str(clip_with_audio)), *_settings(), api_name="/render"
    )
    info, count = read_video_stats(result)
    assert count == round(SECONDS * FPS) and info.fps == pytest.approx(FPS)
    assert (info.width, info.height) == (256, 256) and info.has_audio
    side_info, side_count = read_video_stats(side)
    assert side_count == count and (side_info.width, side_info.height) == (3 * 256, 256)
    assert read_video_stats(overlays)[1] == count
    names = sorted(Path(p).name for p in downloads)
    assert names == ["anchors.json", "result.mp4"]
    anchors = json.loads(Path(next(p for p in downloads if p.endswith(".json"))).read_text())
    assert len(anchors["frames"]) == count
    assert "with audio" in summary


def test_render_can_drop_the_audio(server, clip_with_audio):
    result, *_ = Client(server, verbose=False).predict(
        handle_file(str(PHOTO)),
        handle_file(str(clip_with_audio)),
        *_settings(keep_audio=False),
        api_name="/render",
    )
    info, count = read_video_stats(result)
    assert count == round(SECONDS * FPS) and not info.has_audio


def test_bad_input_is_one_clear_line(server, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video\n")
    with pytest.raises(Exception, match="notes.mp4 is not a video") as error:
        Client(server, verbose=False).predict(
            handle_file(str(PHOTO)), handle_file(str(fake)), *_settings(), api_name="/preview"
        )
    assert "Traceback" not in str(error.value)


def test_uploads_above_the_size_limit_are_refused(server, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(2 * 2**20))  # 2 MB > the 1 MB limit of this server
    with pytest.raises(Exception, match="(?i)size|large|413") as error:
        Client(server, verbose=False).predict(
            handle_file(str(PHOTO)), handle_file(str(big)), *_settings(), api_name="/preview"
        )
    assert "Traceback" not in str(error.value)


def test_four_concurrent_clients_all_complete(server):
    """Two renders and two previews at once, each pair with two different photos: all finish, none mix."""
    jobs = [
        ("/render", "source_10000_09.png"),
        ("/render", "source_10000_04.png"),
        ("/preview", "source_10000_09.png"),
        ("/preview", "source_10000_04.png"),
    ]

    def one(job: tuple[str, str]) -> Path:
        endpoint, photo = job
        outputs = Client(server, verbose=False).predict(
            handle_file(str(EXAMPLES / photo)), handle_file(str(CLIP)), *_settings(), api_name=endpoint
        )
        return Path(outputs[0])

    with ThreadPoolExecutor(len(jobs)) as pool:
        videos = list(pool.map(one, jobs))
    assert [read_video_stats(v)[1] for v in videos] == [round(SECONDS * FPS)] * len(jobs)
    for a, b in (videos[:2], videos[2:]):  # different photos -> different videos
        assert a.read_bytes() != b.read_bytes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
