"""The CLI: outputs on success, one line and exit code 2 on bad input, no leftovers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from internet import INTERNet, load_config
from internet.animate import main
from internet.video.io import read_video_stats
from tests.media_factory import SHARED_CLIP, SHARED_PHOTO, make_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return INTERNet(load_config("tiny")).save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture
def media(tmp_path):
    folder = tmp_path / "médias avec espaces"
    folder.mkdir()
    Image.fromarray(np.full((80, 60, 3), 170, np.uint8)).save(folder / "photo.png")
    return folder / "photo.png", make_video(folder / "drive.mp4", 96, 64, frames=8, fps=8, audio=True)


def test_model_run_writes_every_output(media, checkpoint, tmp_path, capsys):
    photo, video = media
    out = tmp_path / "out"
    out.mkdir()
    code = main([
        str(photo), str(video), "-o", str(out / "result.mp4"), "--motion", "model", "--checkpoint", str(checkpoint),
        "--center-crop", "--absolute", "--fps", "4", "--side-by-side", str(out / "sbs.mp4"),
        "--overlays", str(out / "panel.mp4"), "--anchors-json", str(out / "anchors.json"),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "with audio" in captured.out
    size = load_config("tiny").image_size
    info, count = read_video_stats(out / "result.mp4")
    assert count == 4 and info.fps == pytest.approx(4) and (info.width, info.height) == (size, size)
    assert info.has_audio
    assert read_video_stats(out / "sbs.mp4")[0].width == 3 * size
    assert len(json.loads((out / "anchors.json").read_text())["frames"]) == 4
    assert sorted(p.name for p in out.iterdir()) == ["anchors.json", "panel.mp4", "result.mp4", "sbs.mp4"]


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda p, v, t: [str(t / "missing.jpg"), str(v)], "Image not found"),
        (lambda p, v, t: [str(p), str(p.with_name("notes.txt"))], "not a video"),
        (lambda p, v, t: [str(p), str(v), "--motion", "model", "--checkpoint", str(t)], "not a checkpoint"),
        (lambda p, v, t: [str(p), str(v)], "No person found in the photo"),
        (lambda p, v, t: [str(p), str(v), "-o", str(t / "no" / "x.mp4")], "Output folder does not exist"),
        (lambda p, v, t: [str(p), str(v), "-o", str(v)], "overwrite the input"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(media, tmp_path, capsys, make_args, message):
    photo, video = media
    photo.with_name("notes.txt").write_text("hello")
    args = make_args(photo, video, tmp_path)
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.mp4")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "out.mp4").exists() and not list(tmp_path.glob(".*partial*"))


def test_argument_errors_exit_2(media, tmp_path):
    photo, video = media
    with pytest.raises(SystemExit) as exit_info:
        main([str(photo), str(video), "-o", str(tmp_path / "o.mp4"), "--size", "301"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main([str(photo), str(video), "-o", str(tmp_path / "o.mp4"), "--relative", "--absolute"])


def test_module_entry_point_reports_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "internet.animate", str(tmp_path / "a.jpg"), str(tmp_path / "b.mp4"),
         "-o", str(tmp_path / "c.mp4")],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: Image not found: {tmp_path / 'a.jpg'}"]


@pytest.mark.skipif(not (SHARED_PHOTO.is_file() and SHARED_CLIP.is_file()), reason="../shared/media absent")
def test_real_media_preview(tmp_path, capsys):
    code = main([str(SHARED_PHOTO), str(SHARED_CLIP), "-o", str(tmp_path / "p.mp4"), "--preview", "--max-seconds", "1"])
    assert code == 0, capsys.readouterr().err
    info, count = read_video_stats(tmp_path / "p.mp4")
    assert (info.width, info.height) == (256, 256) and count == 16  # 1 s of the 16 fps clip


@pytest.mark.skipif(not (SHARED_PHOTO.is_file() and SHARED_CLIP.is_file()), reason="../shared/media absent")
def test_a_pose_rig_run_never_imports_torch(tmp_path):
    """The pose rig needs no torch, and importing it is 2 s of a CLI run: the package's model names are lazy
    and the model's motion source lives in its own module."""
    args = [str(SHARED_PHOTO), str(SHARED_CLIP), "-o", str(tmp_path / "p.mp4"), "--preview", "--max-seconds", "0.5"]
    code = f"import sys; from internet.animate import main; code = main({args!r}); print(code, 'torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.stdout.split()[-2:] == ["0", "False"], proc.stderr[-2000:]
    assert read_video_stats(tmp_path / "p.mp4")[1] == 8
