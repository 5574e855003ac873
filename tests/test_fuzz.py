"""Bounded fuzzing of the media probing code: mutated PNG/JPEG/GIF/MP4/MKV bytes and random bytes.

``load_image``, ``probe_video`` and one decode through ``VideoReader`` must either succeed or raise
``InputError`` (one line) — never another exception, never a hang. The inputs are drawn by hypothesis,
derandomized so that CI sees the same ones every run (about 30 s in all); for a longer, random run:

    INTERNET_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from internet.errors import InputError
from internet.video.images import load_image
from internet.video.io import VideoReader, probe_video
from tests import bad_media

LONG_RUN = int(os.environ.get("INTERNET_FUZZ_EXAMPLES", "0"))


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=LONG_RUN or examples, deadline=None, derandomize=not LONG_RUN, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )  # fmt: skip


def _image_seeds() -> dict[str, bytes]:
    rgb = bad_media.person(32)
    out = {}
    for fmt, options in (("PNG", {}), ("JPEG", {"quality": 80}), ("GIF", {}), ("WEBP", {}), ("TIFF", {})):
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format=fmt, **options)
        out[fmt] = buffer.getvalue()
    return out


def _video_seeds() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        return {
            "mp4": bad_media.clip(root / "a.mp4", frames=3, codec=(*bad_media.H264, "-vf", "scale=32:32")).read_bytes(),
            "mp4-faststart": bad_media.clip(
                root / "b.mp4", frames=3, codec=(*bad_media.H264, "-vf", "scale=32:32", "-movflags", "+faststart")
            ).read_bytes(),
            "mkv": bad_media.clip(root / "c.mkv", frames=3, codec=(*bad_media.H264, "-vf", "scale=32:32")).read_bytes(),
        }  # fmt: skip


IMAGE_SEEDS = _image_seeds()
VIDEO_SEEDS = _video_seeds()


@st.composite
def mutated(draw, seeds: dict[str, bytes]) -> bytes:
    """A seed file with a few random edits: flipped bytes, overwritten runs, cuts, insertions, truncation."""
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "run", "cut", "insert", "truncate", "extreme"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "run":
            data[at : at + draw(st.integers(1, 64))] = bytes([draw(st.sampled_from([0, 0xFF, 0x7F]))]) * 64
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 256))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "truncate":
            del data[at:]
        elif op == "extreme" and len(data) >= at + 4:  # a size/length field set to something absurd
            data[at : at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00"]))
    return bytes(data)


any_bytes = st.one_of(st.binary(max_size=2048), st.binary(max_size=64).map(lambda b: b"\x89PNG\r\n\x1a\n" + b))


def _write(data: bytes, suffix: str) -> Path:
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)  # noqa: SIM115 - closed right away
    handle.write(data)
    handle.close()
    return Path(handle.name)


def _only_input_errors(function, *args):
    try:
        return function(*args)
    except InputError as error:
        assert str(error).strip() and "\n" not in str(error).strip(), repr(str(error))
        return None


@pytest.mark.timeout(120)
@fuzz_settings(120)
@given(st.one_of(mutated(IMAGE_SEEDS), any_bytes), st.sampled_from([".png", ".jpg", ".gif", ".webp", ".tif"]))
def test_load_image_on_mutated_files(data, suffix):
    path = _write(data, suffix)
    try:
        rgb = _only_input_errors(load_image, path)
        event("loaded" if rgb is not None else "InputError")
        if rgb is not None:
            assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8 and min(rgb.shape[:2]) >= 2
    finally:
        path.unlink()


@pytest.mark.timeout(180)
@fuzz_settings(150)
@given(st.one_of(mutated(VIDEO_SEEDS), mutated(IMAGE_SEEDS), any_bytes), st.sampled_from([".mp4", ".mkv", ".mov"]))
def test_probe_and_decode_on_mutated_files(data, suffix):
    path = _write(data, suffix)
    try:
        info = _only_input_errors(probe_video, path)
        if info is None:
            event("probe: InputError")
            return
        assert info.width > 0 and info.height > 0 and 0 < info.fps <= 1000 and info.frame_count >= 0
        with VideoReader(info, max_seconds=2.0, size=(16, 16)) as reader:
            frames = _only_input_errors(lambda: [f for _, f in zip(range(100), reader)])
        event("decode: InputError" if frames is None else f"decode: {min(len(frames), 3)}+ frames")
        assert frames is None or all(f.shape == (16, 16, 3) for f in frames)
    finally:
        path.unlink()


MEMORY_PROBE = """
import resource, sys
from internet.errors import InputError
from internet.video.images import load_image
try:
    load_image(sys.argv[1])
except InputError:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.timeout(60)
def test_a_tiny_damaged_png_costs_no_memory(tmp_path):
    """Found by the fuzzer: 18 bytes whose first PNG chunk claims 3 GB made the OpenCV fallback allocate
    2.7 GB (4 s) before failing. Pillow rejects the file; OpenCV must not be asked to try it."""
    import subprocess
    import sys

    path = bad_media.png_chunk_claim(tmp_path / "chunk.png")
    root = Path(__file__).resolve().parents[1]
    baseline, damaged = (
        int(subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(p)], cwd=root, capture_output=True,
                           text=True, check=True, timeout=50).stdout.split()[-1])
        for p in (bad_media.save(tmp_path / "ok.png", np.zeros((8, 8, 3), np.uint8)), path)
    )  # fmt: skip
    assert damaged < baseline + 200, f"peak memory {damaged} MB, {baseline} MB for a valid 8×8 PNG"
