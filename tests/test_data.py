"""Loaders: the Sec 3.4 sampling rule, sample contents, bad files, DIS flow and its cache."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from internet.errors import InputError
from training.data import (
    SynthRunwayDataset,
    VideoFolderDataset,
    collate_samples,
    driving_index,
    fit_frame,
    load_clip,
    probe_training_video,
    read_training_frames,
    sample_generator,
)
from training.flow import FlowCache, estimate_backward_flow
from training.synthrunway import generate

LONG, SHORT, SIZE = 70, 10, 48


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, clips=1, frames=LONG, size=SIZE, seed=3, progress=False)
    generate(root, clips=1, frames=SHORT, size=SIZE, seed=4, progress=False)
    generate(root, clips=1, frames=4, size=SIZE, seed=10000, progress=False)
    return root


def _write_mp4(path: Path, frames: list[np.ndarray], fps: int = 30) -> None:
    h, w = frames[0].shape[:2]
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p",
        str(path),
    ]  # fmt: skip
    subprocess.run(command, input=b"".join(f.tobytes() for f in frames), check=True)


@pytest.fixture(scope="module")
def video_root(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    clip = load_clip(synth_root / "s00003_c00000")
    frames = [cv2.resize(f, (64, 80), interpolation=cv2.INTER_LINEAR) for f in clip.frames()]
    _write_mp4(root / "good.mp4", frames)
    _write_mp4(root / "single.mp4", frames[:1])
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    (root / "empty.mp4").write_bytes(b"")
    folder = root / "clipdir"
    folder.mkdir()
    for t in range(12):
        cv2.imwrite(str(folder / f"{t:05d}.png"), cv2.cvtColor(frames[t], cv2.COLOR_RGB2BGR))
    return root


def _imread_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _as_image(tensor: torch.Tensor) -> np.ndarray:
    return (tensor.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_driving_index_follows_sec_3_4() -> None:
    g = torch.Generator().manual_seed(0)
    draws = [driving_index(100, g) for _ in range(2000)]
    assert min(draws) == 61 and max(draws) == 99  # t > 60, every later frame reachable
    assert {driving_index(62, g) for _ in range(50)} == {61}
    short = [driving_index(10, g) for _ in range(500)]
    assert min(short) == 5 and max(short) == 9  # clamped: the second half of a short clip
    assert {driving_index(2, g) for _ in range(20)} == {1}
    assert max(driving_index(100, g, min_offset=10) for _ in range(200)) > 11
    assert min(driving_index(100, g, min_offset=10) for _ in range(200)) == 11
    with pytest.raises(InputError):
        driving_index(1, g)


def test_synthrunway_sample_matches_the_clip_on_disk(synth_root: Path) -> None:
    dataset = SynthRunwayDataset(synth_root, split="train")
    assert dataset.names == ["s00003_c00000", "s00004_c00000"]
    clip_dir = synth_root / "s00003_c00000"
    flow, visible = np.load(clip_dir / "flow.npy"), np.load(clip_dir / "visible.npy")
    seen = set()
    for seed in range(6):
        sample = dataset.sample(0, torch.Generator().manual_seed(seed))
        t = sample.t
        seen.add(t)
        assert sample.clip == "s00003_c00000" and 60 < t < LONG
        for tensor in (sample.source, sample.driving, sample.previous):
            assert tensor.shape == (3, SIZE, SIZE) and tensor.dtype == torch.float32
            assert tensor.min() >= 0.0 and tensor.max() <= 1.0
        np.testing.assert_array_equal(_as_image(sample.source), _imread_rgb(clip_dir / "frames/00000.png"))
        np.testing.assert_array_equal(_as_image(sample.previous), _imread_rgb(clip_dir / f"frames/{t - 1:05d}.png"))
        np.testing.assert_array_equal(_as_image(sample.driving), _imread_rgb(clip_dir / f"frames/{t:05d}.png"))
        assert sample.flow.shape == (SIZE, SIZE, 2) and sample.flow.dtype == torch.float32
        np.testing.assert_array_equal(sample.flow.numpy(), flow[t - 1].astype(np.float32))
        assert sample.valid.shape == (1, SIZE, SIZE) and sample.valid.dtype == torch.float32
        np.testing.assert_array_equal(sample.valid[0].numpy() > 0.5, visible[t - 1])
    assert len(seen) > 1
    short = dataset.sample(1, torch.Generator().manual_seed(0))
    assert SHORT // 2 <= short.t < SHORT


def test_sampling_is_deterministic_per_index_and_epoch(synth_root: Path) -> None:
    dataset = SynthRunwayDataset(synth_root, split="train", seed=7)
    first, again = dataset[0], dataset[0]
    assert first.t == again.t and torch.equal(first.driving, again.driving) and torch.equal(first.flow, again.flow)
    same = dataset.sample(0, sample_generator(7, 0, 0))
    assert same.t == first.t
    ts = []
    for epoch in range(8):
        dataset.set_epoch(epoch)
        ts.append(dataset[0].t)
    assert len(set(ts)) > 1


def test_split_filter_resize_and_collate(synth_root: Path) -> None:
    test_set = SynthRunwayDataset(synth_root, split="test")
    assert test_set.names == ["s10000_c00000"]
    small = SynthRunwayDataset(synth_root, size=32, split="train")
    full = SynthRunwayDataset(synth_root, split="train")
    a, b = small.sample(0, torch.Generator().manual_seed(1)), full.sample(0, torch.Generator().manual_seed(1))
    assert a.t == b.t and a.driving.shape == (3, 32, 32) and a.flow.shape == (32, 32, 2)
    assert a.valid.shape == (1, 32, 32)
    scale = a.flow.abs().mean() / b.flow.abs().mean()
    assert 0.5 < scale < 0.85  # vectors shrink with the image (32/48)
    batch = collate_samples([a, small.sample(1, torch.Generator().manual_seed(2))])
    assert batch.driving.shape == (2, 3, 32, 32) and batch.flow.shape == (2, 32, 32, 2)
    assert batch.valid.shape == (2, 1, 32, 32) and len(batch.clip) == 2 and len(batch.t) == 2


def test_broken_synth_clip_is_skipped_with_a_warning(synth_root: Path, tmp_path: Path) -> None:
    generate(tmp_path, clips=2, frames=SHORT, size=SIZE, seed=1, progress=False)
    for png in (tmp_path / "s00001_c00000" / "frames").glob("*.png"):
        png.write_bytes(b"not a png")
    dataset = SynthRunwayDataset(tmp_path)
    with pytest.warns(UserWarning, match="s00001_c00000"):
        sample = dataset.sample(0, torch.Generator().manual_seed(0))
    assert sample.clip == "s00001_c00001"


def test_video_folder_skips_bad_files_with_warnings(video_root: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = VideoFolderDataset(video_root, size=32)
    messages = " ".join(str(w.message) for w in caught)
    for name in ("corrupt.mp4", "empty.mp4", "single.mp4"):
        assert name in messages
    assert dataset.names == ["clipdir", "good"]
    assert [v.num_frames for v in dataset.videos] == [12, LONG]


@pytest.mark.parametrize(
    ("name", "message"),
    [("corrupt.mp4", "corrupt.mp4"), ("empty.mp4", "empty.mp4"), ("single.mp4", "too short")],
)
def test_probe_names_the_bad_file(video_root: Path, name: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        probe_training_video(video_root / name)


def test_mixed_frame_sizes_are_reported(tmp_path: Path) -> None:
    for t, size in enumerate((32, 32, 40)):
        cv2.imwrite(str(tmp_path / f"{t:05d}.png"), np.zeros((size, size, 3), np.uint8))
    with pytest.raises(InputError, match="Mixed frame sizes"):
        probe_training_video(tmp_path)


def test_lazy_reads_match_sequential_decoding(video_root: Path) -> None:
    info = probe_training_video(video_root / "good.mp4")
    capture = cv2.VideoCapture(str(video_root / "good.mp4"))
    sequential = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        sequential.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    assert len(sequential) == LONG
    wanted = [0, 45, 66, 67]
    frames = read_training_frames(info, wanted)
    for i in wanted:
        np.testing.assert_array_equal(frames[i], sequential[i])


@pytest.mark.filterwarnings("ignore:Skipping")
def test_video_sample_with_flow_cache(video_root: Path, tmp_path: Path) -> None:
    dataset = VideoFolderDataset(video_root, size=48, flow_cache=tmp_path, seed=3)
    index = dataset.names.index("good")
    sample = dataset[index]
    assert sample.clip == "good" and 60 < sample.t < LONG
    assert sample.driving.shape == (3, 48, 48) and sample.flow.shape == (48, 48, 2)
    assert sample.valid.shape == (1, 48, 48) and sample.valid.mean() > 0.3
    cached = list(tmp_path.rglob("*.npy"))
    assert len(cached) == 1 and cached[0].name == f"{sample.t:05d}.npy"
    again = VideoFolderDataset(video_root, size=48, flow_cache=tmp_path, seed=3)[index]
    assert torch.equal(sample.flow, again.flow) and torch.equal(sample.valid, again.valid)
    assert torch.equal(sample.driving, again.driving)


def test_list_file_selects_videos_by_url_basename(video_root: Path, tmp_path: Path) -> None:
    listing = tmp_path / "fashion_train.txt"
    listing.write_text("https://example.com/videos/good.mp4\nhttps://example.com/videos/missing.mp4\n")
    with pytest.warns(UserWarning, match="1 of 2 videos"):
        dataset = VideoFolderDataset(video_root, size=32, list_file=listing)
    assert dataset.names == ["good"]


def test_fit_modes() -> None:
    frame = np.zeros((60, 40, 3), np.uint8)
    frame[:, :, 0] = 255
    frame[:10] = 0  # a black band at the top
    for fit in ("resize", "crop", "pad"):
        assert fit_frame(frame, 32, fit).shape == (32, 32, 3)
    assert fit_frame(frame, 32, "crop")[0, 16, 0] == 255  # the band is cropped away
    assert fit_frame(frame, 32, "pad")[0, 16, 0] == 0  # padding keeps it
    with pytest.raises(InputError):
        fit_frame(frame, 32, "stretch")


def _texture(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size // 6, size // 6, 3)).astype(np.uint8)
    return cv2.GaussianBlur(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), (0, 0), 1.0)


def test_dis_recovers_a_translation_within_a_pixel() -> None:
    previous = _texture(96, 0)
    shift = np.array([2.6, -1.7])
    matrix = np.array([[1, 0, shift[0]], [0, 1, shift[1]]])  # current(x) = previous(x + shift)
    current = cv2.warpAffine(previous, matrix, (96, 96), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    estimate = estimate_backward_flow(previous, current)
    interior = estimate.flow[12:-12, 12:-12].reshape(-1, 2)
    assert np.all(np.abs(np.median(interior, axis=0) - shift) < 1.0)
    assert np.mean(np.linalg.norm(interior - shift, axis=1) < 1.0) > 0.9
    assert estimate.valid[12:-12, 12:-12].mean() > 0.9
    assert not estimate.valid[:, -2:].any()  # x + flow leaves the previous frame there


def test_forward_backward_check_flags_disocclusion() -> None:
    background, square = _texture(96, 1), _texture(96, 2)
    previous, current = background.copy(), background.copy()
    previous[30:62, 24:56] = square[30:62, 24:56]
    current[30:62, 32:64] = square[30:62, 24:56]  # the square moves 8 px right, uncovering 24..31
    estimate = estimate_backward_flow(previous, current)
    uncovered = estimate.valid[34:58, 24:32]
    static = np.concatenate([estimate.valid[:20].ravel(), estimate.valid[72:].ravel()])
    assert uncovered.mean() < 0.5
    assert static.mean() > 0.9
    moving = estimate.flow[36:56, 40:58].reshape(-1, 2)
    assert np.abs(np.median(moving, axis=0) - np.array([-8, 0])).max() < 1.0


def test_flow_cache_round_trip(tmp_path: Path) -> None:
    previous, current = _texture(48, 3), _texture(48, 3)
    cache = FlowCache(tmp_path, "video_48_resize_medium")
    assert cache.load(5) is None
    fresh = cache.get_or_compute(5, previous, current)
    loaded = cache.load(5)
    assert loaded is not None
    np.testing.assert_array_equal(fresh.flow, loaded.flow)
    np.testing.assert_array_equal(fresh.valid, loaded.valid)
    cache.path(5).write_bytes(b"garbage")
    assert cache.load(5) is None  # a damaged entry is recomputed, not trusted
