"""Bad and odd input, table-driven: every case gives one clear line or a correct result.

Each row is run twice, through the CLI (``internet.animate.main``: exit code 2 and exactly one ``error:``
line, or exit code 0 and a playable result) and through the Python API (``InputError``, or a result whose
warnings say what was adjusted). Either way nothing is left behind: no partial file in the output folder,
nothing in the ``TMPDIR`` the run was given. A few rows also run as real ``python -m internet.animate``
processes (the exit code, the stderr a person sees, no traceback, no hang).

Persons are the SynthRunway example media (``assets/examples``); every file is generated in the test.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from internet import INTERNet, load_config
from internet.animate import main
from internet.errors import CheckpointError, InputError
from internet.pipeline import AnimateOptions, Animator, OutputPaths
from internet.video.io import read_video_stats
from tests import bad_media

ROOT = Path(__file__).resolve().parents[1]
SIZE, MAX_SECONDS = 64, 1.0
CLI_OPTIONS = ["--size", str(SIZE), "--max-seconds", str(MAX_SECONDS)]
# Lines that native libraries (MediaPipe's absl/TFLite logging) print straight to fd 2; not ours to word.
NATIVE_LOG = re.compile(r"^(INFO: |WARNING: All log messages|[IWE]\d{4} )")

Maker = Callable[[Path], Path]


@dataclass(frozen=True)
class Case:
    """One kind of bad or odd input: which file is replaced (by ``make`` under ``name``), what must happen.

    ``error`` is a regular expression the one-line message must match; ``None`` means the render must
    succeed, and then ``warning`` (if given) must match one of the result's warnings."""

    kind: str
    role: str  # "source" (the photo) or "driving" (the video)
    name: str  # file name the generator writes (its extension is part of the test)
    make: Maker
    error: str | None = None
    warning: str | None = None


CASES = [
    # --- files that are not what their name says
    Case("empty photo", "source", "photo.jpg", bad_media.empty, error="not a readable image"),
    Case("empty video", "driving", "drive.mp4", bad_media.empty, error="not a video"),
    Case("text file named .mp4", "driving", "notes.mp4", bad_media.text, error="not a video"),
    Case("text file named .png", "source", "notes.png", bad_media.text, error="not a readable image"),
    Case("image named .mp4", "driving", "still.mp4", bad_media.image_as_video, error="single frame"),
    Case("video named .jpg", "source", "clip.jpg", bad_media.video_as_image, error="not a readable image"),
    Case("missing photo", "source", "nowhere.png", lambda p: p, error="not found"),
    Case("folder as video", "driving", "folder.mp4", lambda p: (p.mkdir(), p)[1], error="not found"),
    # --- broken or degenerate videos
    Case("truncated MP4", "driving", "cut.mp4",
         lambda p: bad_media.truncated(bad_media.clip(p.with_name("whole.mp4")), p), error="not a video"),
    Case("MP4 with 0 frames", "driving", "zero.mp4", bad_media.zero_frames,
         error="Cannot decode.*partial file"),
    Case("video with 1 frame", "driving", "one.mp4", bad_media.one_frame, error="single frame"),
    Case("audio only", "driving", "sound.m4a", bad_media.audio_only, error="no video stream"),
    Case("corrupt frames", "driving", "corrupt.mp4", bad_media.corrupt_middle, error="Cannot decode"),
    # --- odd videos that must work
    Case("GIF", "driving", "walk.gif", bad_media.gif),
    Case("WebM (VP9)", "driving", "walk.webm", bad_media.webm),
    Case("MOV (MJPEG)", "driving", "walk.mov", bad_media.mov),
    Case("variable frame rate", "driving", "vfr.mp4", bad_media.variable_frame_rate,
         warning="Variable frame rate"),
    Case("4-hour header claim", "driving", "long.mkv", bad_media.long_header_claim,
         warning="lasts 14400.0 s"),
    # --- odd photos that must work, and ones that cannot
    Case("10 000² photo", "source", "huge.jpg", bad_media.huge_image),
    Case("1×1 photo", "source", "dot.png", bad_media.tiny_image, error="only 1×1 px"),
    Case("100 000² header claim", "source", "bomb.png",
         lambda p: bad_media.png_size_claim(p, 100_000, 100_000), error="above the 150 MP limit"),
    Case("18-byte PNG claiming a 3 GB chunk", "source", "chunk.png", bad_media.png_chunk_claim,
         error="not a readable image"),
    Case("RGBA photo", "source", "rgba.png", bad_media.rgba),
    Case("16-bit photo", "source", "deep.png", bad_media.sixteen_bit),
    Case("grayscale photo", "source", "gray.png", bad_media.grayscale),
    Case("CMYK JPEG", "source", "cmyk.jpg", bad_media.cmyk),
    Case("EXIF-rotated photo", "source", "rotated.png", bad_media.exif_rotated),
    # --- people
    Case("cut off at the knees", "source", "knees.png", bad_media.cut_at_the_knees),
    Case("no person in the photo", "source", "texture.png", bad_media.texture,
         error="No person found in the photo"),
    Case("no person in the video", "driving", "pattern.mp4", bad_media.testsrc,
         error="No person found in the driving video"),
    Case("two people", "source", "two.png", bad_media.two_people),
    # --- paths
    Case("non-ASCII, spaces in paths", "source", "ünïcødé folder/photo with spaces 写真.png",
         lambda p: bad_media.save(p, bad_media.person())),
]  # fmt: skip


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[Path, Path]:
    """A photo and a driving clip that work (256² person, 8 frames of a walk at 30 fps)."""
    folder = tmp_path_factory.mktemp("good")
    return bad_media.save(folder / "photo.png", bad_media.person()), bad_media.clip(folder / "drive.mp4")


@dataclass
class Workspace:
    source: Path
    driving: Path
    out: Path
    tmp: Path  # the TMPDIR the run is given


def _workspace(case: Case, good: tuple[Path, Path], root: Path) -> Workspace:
    inputs, out, tmp = root / "in", root / "out", root / "tmp"
    for folder in (inputs, out, tmp):
        folder.mkdir()
    bad = inputs / case.name
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad = case.make(bad)
    source, driving = (bad, good[1]) if case.role == "source" else (good[0], bad)
    return Workspace(source, driving, out, tmp)


def _visible_lines(stderr: str) -> list[str]:
    """What a terminal shows: the text after each line's last carriage return (progress bars), non-empty."""
    lines = (line.rsplit("\r", 1)[-1].strip() for line in stderr.split("\n"))  # splitlines() splits at \r
    return [line for line in lines if line]


def _assert_nothing_left(ws: Workspace, expected: set[str]) -> None:
    assert {p.name for p in ws.out.iterdir()} == expected, "partial or unexpected files in the output folder"
    assert not list(ws.tmp.iterdir()), f"temporary files left in TMPDIR: {list(ws.tmp.iterdir())}"


def _assert_plays(path: Path) -> int:
    info, count = read_video_stats(path)
    assert (info.width, info.height) == (SIZE, SIZE)
    assert count >= 2
    return count


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_bad_input_gives_one_line_or_a_result(case, good, tmp_path, monkeypatch, capsys):
    ws = _workspace(case, good, tmp_path)
    monkeypatch.setenv("TMPDIR", str(ws.tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # make the tempfile module read TMPDIR again

    # The CLI, in process: exit code 2 and one error line, or exit code 0 and a playable video.
    capsys.readouterr()
    code = main([str(ws.source), str(ws.driving), "-o", str(ws.out / "cli.mp4"), *CLI_OPTIONS])
    captured = capsys.readouterr()
    lines = _visible_lines(captured.err)
    assert "Traceback" not in captured.err
    if case.error is not None:
        assert code == 2, captured.err
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert re.search(case.error, lines[0]), lines[0]
        assert len(lines[0]) < 300
        _assert_nothing_left(ws, set())
    else:
        assert code == 0, captured.err
        assert all(line.startswith("warning: ") for line in lines), lines
        if case.warning is not None:
            assert any(re.search(case.warning, line) for line in lines), lines
        cli_frames = _assert_plays(ws.out / "cli.mp4")
        _assert_nothing_left(ws, {"cli.mp4"})

    # The Python API: InputError, or a result that says what it adjusted.
    animator = Animator.from_pretrained(None)
    options = AnimateOptions(size=SIZE, max_seconds=MAX_SECONDS)
    outputs = OutputPaths(video=ws.out / "api.mp4")
    if case.error is not None:
        with pytest.raises(InputError, match=case.error):
            animator.animate(ws.source, ws.driving, options, outputs)
        _assert_nothing_left(ws, set())
    else:
        result = animator.animate(ws.source, ws.driving, options, outputs)
        if case.warning is not None:
            assert any(re.search(case.warning, w) for w in result.warnings), result.warnings
        assert result.frame_count == _assert_plays(ws.out / "api.mp4") == cli_frames
        assert result.source.shape == (SIZE, SIZE, 3)
        _assert_nothing_left(ws, {"cli.mp4", "api.mp4"})


def test_the_table_covers_at_least_fifteen_kinds():
    assert len({c.kind for c in CASES}) == len(CASES) >= 15
    assert sum(c.error is None for c in CASES) >= 5 and sum(c.error is not None for c in CASES) >= 10


# Real processes for a few rows: what a person at a terminal sees.
PROCESS_CASES = [
    "text file named .mp4",
    "corrupt frames",
    "no person in the video",
    "4-hour header claim",
    "variable frame rate",
]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", PROCESS_CASES)
def test_the_command_line_process(kind, good, tmp_path):
    case = next(c for c in CASES if c.kind == kind)
    ws = _workspace(case, good, tmp_path)
    env = {**os.environ, "TMPDIR": str(ws.tmp), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "internet.animate", str(ws.source), str(ws.driving)]
    cmd += ["-o", str(ws.out / "r.mp4"), *CLI_OPTIONS]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=150)
    stderr, stdout = proc.stderr.decode("utf-8", "replace"), proc.stdout.decode("utf-8", "replace")
    assert "Traceback" not in stderr
    lines = [line for line in _visible_lines(stderr) if not NATIVE_LOG.match(line)]
    if case.error is not None:
        assert proc.returncode == 2 and len(lines) == 1 and re.search(case.error, lines[0]), stderr
        _assert_nothing_left(ws, set())
    else:
        assert proc.returncode == 0, stderr
        assert lines and all(line.startswith("warning: ") for line in lines), lines
        assert stdout.startswith(f"wrote {ws.out / 'r.mp4'}")
        _assert_plays(ws.out / "r.mp4")
        _assert_nothing_left(ws, {"r.mp4"})


# ------------------------------------------------------------------------------------------ checkpoints


class _Tripwire:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _rewrite_config(folder: Path, **changes) -> None:
    data = json.loads((folder / "config.json").read_text())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    (folder / "config.json").write_text(json.dumps(data))


def _retensor(folder: Path, change: Callable[[dict], dict]) -> None:
    tensors = load_file(str(folder / "model.safetensors"))
    save_file(change(tensors), str(folder / "model.safetensors"))


def _first(tensors: dict) -> str:
    return next(k for k, v in tensors.items() if v.is_floating_point())


@dataclass(frozen=True)
class CheckpointCase:
    kind: str
    spoil: Callable[[Path], None]  # turns a good tiny checkpoint folder into a bad one
    error: str
    # INTERNet.from_pretrained builds the model before it reads the weights: for a config that asks for
    # 10**7 channels that is an allocation failure, so only the Animator/CLI path (which checks first) is run.
    model_loader: bool = True


CHECKPOINT_CASES = [
    CheckpointCase("empty folder", lambda d: [p.unlink() for p in d.iterdir()], "not a checkpoint folder"),
    CheckpointCase("config.json not JSON", lambda d: (d / "config.json").write_text("{image_size: 64"),
                   "cannot read"),
    CheckpointCase("config.json a list", lambda d: (d / "config.json").write_text("[1, 2]"), "JSON object"),
    CheckpointCase("unknown config key", lambda d: _rewrite_config(d, colour="red"), "unknown key"),
    CheckpointCase("config value of the wrong type", lambda d: _rewrite_config(d, image_size="big"),
                   "integer"),
    CheckpointCase("absurd config (huge channels)",
                   lambda d: _rewrite_config(d, anchors__max_features=10**7, anchors__block_expansion=10**7),
                   "has shape", model_loader=False),
    CheckpointCase("pickle disguised as safetensors",
                   lambda d: (d / "model.safetensors").write_bytes(pickle.dumps(_Tripwire(d / "UNPICKLED"))),
                   "not a valid safetensors file"),
    CheckpointCase("torch.save file as safetensors",
                   lambda d: torch.save({"w": torch.zeros(2), "x": _Tripwire(d / "UNPICKLED")},
                                        d / "model.safetensors"),
                   "not a valid safetensors file"),
    CheckpointCase("empty weights file", lambda d: (d / "model.safetensors").write_bytes(b""),
                   "not a valid safetensors file"),
    CheckpointCase("truncated weights", lambda d: bad_media.truncated(d / "model.safetensors",
                                                                      d / "model.safetensors", 0.5),
                   "not a valid safetensors file"),
    CheckpointCase("header claims 2**60 bytes",
                   lambda d: (d / "model.safetensors").write_bytes(struct.pack("<Q", 2**60) + b"{}"),
                   "not a valid safetensors file"),
    CheckpointCase("wrong shapes", lambda d: _retensor(d, lambda t: {**t, _first(t): torch.zeros(3, 3)}),
                   "has shape"),
    CheckpointCase("wrong dtype", lambda d: _retensor(d, lambda t: {**t, _first(t): t[_first(t)].int()}),
                   "dtype"),
    CheckpointCase("missing tensors", lambda d: _retensor(d, lambda t: dict(list(t.items())[1:])), "missing"),
    CheckpointCase("unexpected tensors", lambda d: _retensor(d, lambda t: {**t, "extra.w": torch.zeros(1)}),
                   "unexpected"),
    CheckpointCase("NaN weights", lambda d: _retensor(d, lambda t: {**t, _first(t): t[_first(t)] / 0 * 0}),
                   "NaN"),
    CheckpointCase("weights of another preset", lambda d: save_file(
                   INTERNet(load_config("small-128")).state_dict(), str(d / "model.safetensors")),
                   "does not fit|has shape"),
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return INTERNet(load_config("tiny")).save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=[c.kind for c in CHECKPOINT_CASES])
def test_bad_checkpoints_are_one_line_and_never_unpickled(case, tiny_checkpoint, good, tmp_path, capsys):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    case.spoil(folder)
    if case.model_loader:
        message = case.error if (folder / "config.json").exists() else "missing"
        with pytest.raises(CheckpointError, match=message):
            INTERNet.from_pretrained(folder)
    with pytest.raises(InputError, match=case.error):
        Animator.from_pretrained(folder)
    out = tmp_path / "out"
    out.mkdir()
    capsys.readouterr()
    code = main([str(good[0]), str(good[1]), "-o", str(out / "r.mp4"), "--motion", "model",
                 "--checkpoint", str(folder), "--center-crop"])  # fmt: skip
    lines = _visible_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and re.search(case.error, lines[0]), lines
    assert not (folder / "UNPICKLED").exists(), "something was unpickled"
    assert not list(out.iterdir())
