"""SynthRunway generator: determinism, variety, and ground truth checked against the rendered pixels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from internet.errors import InputError
from internet.skeleton import JOINT_NAMES
from training.synthrunway import TEST_SEED_START, clip_name, generate, main, split_of

SIZE, FRAMES, FPS = 80, 12, 10.0  # a low frame rate: several pixels of motion per frame
EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("synthrunway")
    return generate(out, clips=3, frames=FRAMES, size=SIZE, seed=5, progress=False, fps=FPS)


def _frames(clip: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p)).astype(np.float32) for p in sorted((clip / "frames").glob("*.png"))]


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _edge_band(mask: np.ndarray) -> np.ndarray:
    """Pixels within one pixel of the person outline (antialiased colours live there)."""
    m = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    return cv2.dilate(m, kernel) != cv2.erode(m, kernel)


def test_files_shapes_and_meta(clips: list[Path]) -> None:
    clip = clips[0]
    frames = sorted((clip / "frames").glob("*.png"))
    assert [p.name for p in frames] == [f"{t:05d}.png" for t in range(FRAMES)]
    image = cv2.imread(str(frames[0]))
    assert image.shape == (SIZE, SIZE, 3)
    flow, visible = np.load(clip / "flow.npy"), np.load(clip / "visible.npy")
    mask, joints = np.load(clip / "mask.npy"), np.load(clip / "joints.npy")
    assert flow.dtype == np.float16 and flow.shape == (FRAMES - 1, SIZE, SIZE, 2)
    assert visible.dtype == bool and visible.shape == (FRAMES - 1, SIZE, SIZE)
    assert mask.dtype == bool and mask.shape == (FRAMES, SIZE, SIZE)
    assert joints.dtype == np.float32 and joints.shape == (FRAMES, len(JOINT_NAMES), 2)
    meta = json.loads((clip / "meta.json").read_text())
    assert (meta["seed"], meta["index"], meta["split"]) == (5, 0, "train")
    assert meta["num_frames"] == FRAMES and meta["size"] == SIZE and meta["fps"] > 0
    assert meta["joint_names"] == list(JOINT_NAMES)
    # The person is a sizeable part of the frame, and the joints sit on it.
    assert 0.03 < mask.mean() < 0.6
    near_person = cv2.dilate(mask[0].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    xy = np.round(joints[0]).astype(int)
    inside = (xy >= 0).all(axis=1) & (xy < SIZE).all(axis=1)
    assert inside.all()
    assert near_person[xy[:, 1], xy[:, 0]].mean() >= 0.9
    # Clips start facing the camera, so the person's left side is on the image's right (as in MediaPipe).
    j = {name: joints[0, i] for i, name in enumerate(JOINT_NAMES)}
    for part in ("shoulder", "hip"):
        assert j[f"left_{part}"][0] > j[f"right_{part}"][0]
    assert j["nose"][1] < j["left_shoulder"][1] < j["left_hip"][1] < j["left_knee"][1] < j["left_ankle"][1]


def test_same_arguments_give_identical_bytes(clips: list[Path], tmp_path: Path) -> None:
    again = generate(tmp_path, clips=2, frames=FRAMES, size=SIZE, seed=5, workers=2, progress=False, fps=FPS)
    for first, second in zip(clips[:2], again, strict=True):
        assert first.name == second.name
        assert _digest(first) == _digest(second)


def test_different_seeds_and_indices_differ(clips: list[Path], tmp_path: Path) -> None:
    (other,) = generate(tmp_path, clips=1, frames=FRAMES, size=SIZE, seed=6, progress=False, fps=FPS)
    first = [_frames(c)[0] for c in (clips[0], clips[1], other)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(first[i] - first[j]).mean() > 10  # different people, garments, backgrounds
    joints = [np.load(c / "joints.npy") for c in (clips[0], other)]
    motion = [j - j[:1] for j in joints]  # motion relative to the first frame
    assert np.abs(motion[0] - motion[1]).mean() > 0.2


def test_backward_flow_warps_previous_frame_onto_current(clips: list[Path]) -> None:
    """frame_t(x) ≈ frame_{t-1}(x + flow[t-1](x)) on visible pixels, checked with OpenCV's warp only."""
    for clip in clips:
        frames, flow = _frames(clip), np.load(clip / "flow.npy").astype(np.float32)
        visible, mask = np.load(clip / "visible.npy"), np.load(clip / "mask.npy")
        errors = {"gt": [], "zero": [], "+x": [], "-x": [], "+y": [], "-y": []}
        overall = []
        shifts = {"gt": (0, 0), "+x": (0.5, 0), "-x": (-0.5, 0), "+y": (0, 0.5), "-y": (0, -0.5)}
        for t in range(1, FRAMES):
            keep = visible[t - 1] & ~_edge_band(mask[t])
            person = keep & mask[t]
            for name, (dx, dy) in shifts.items():
                warped = _warp(frames[t - 1], flow[t - 1] + np.array([dx, dy], np.float32))
                error = np.abs(warped - frames[t]).mean(axis=-1)
                errors[name].append(error[person].mean())
                if name == "gt":
                    overall.append(error[keep].mean())
            errors["zero"].append(np.abs(frames[t - 1] - frames[t]).mean(axis=-1)[person].mean())
        mean = {name: float(np.mean(values)) for name, values in errors.items()}
        assert np.mean(overall) < 2.5, (clip.name, np.mean(overall))
        assert mean["gt"] < 9.0, (clip.name, mean)
        assert mean["gt"] < 0.8 * mean["zero"], (clip.name, mean)
        for name in ("+x", "-x", "+y", "-y"):
            assert mean["gt"] < mean[name], (clip.name, mean)


def test_visible_pixels_come_from_the_person_and_uncovered_background_is_not_visible(
    clips: list[Path],
) -> None:
    """Checked with the masks only: where frame t shows background that the person covered in frame t-1,
    ``visible`` must be false; visible person pixels must come from person pixels."""
    uncovered_total = 0
    for clip in clips:
        flow, visible = np.load(clip / "flow.npy").astype(np.float32), np.load(clip / "visible.npy")
        mask = np.load(clip / "mask.npy")
        ys, xs = np.mgrid[0:SIZE, 0:SIZE]
        kernel = np.ones((3, 3), np.uint8)
        for t in range(1, FRAMES):
            tx = np.clip(np.round(xs + flow[t - 1, ..., 0]).astype(int), 0, SIZE - 1)
            ty = np.clip(np.round(ys + flow[t - 1, ..., 1]).astype(int), 0, SIZE - 1)
            person_core = cv2.erode(mask[t - 1].astype(np.uint8), kernel).astype(bool)
            background_core = ~cv2.dilate(mask[t - 1].astype(np.uint8), kernel).astype(bool)
            calm = ~_edge_band(mask[t])
            uncovered = calm & ~mask[t] & person_core[ty, tx]
            assert not visible[t - 1][uncovered].any()
            uncovered_total += int(uncovered.sum())
            from_background = calm & mask[t] & visible[t - 1] & background_core[ty, tx]
            assert not from_background.any()
            assert visible[t - 1].mean() > 0.8
    assert uncovered_total > 0  # the clips do contain disocclusions


def test_split_convention_and_names() -> None:
    assert split_of(0) == "train" and split_of(TEST_SEED_START - 1) == "train"
    assert split_of(TEST_SEED_START) == "test"
    assert clip_name(3, 12) == "s00003_c00012"


def test_cli_writes_clips_and_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--out", str(tmp_path), "--clips", "1", "--frames", "3", "--size", "48", "--seed", "10001"]) == 0
    meta = json.loads((tmp_path / clip_name(10001, 0) / "meta.json").read_text())
    assert meta["split"] == "test"
    assert main(["--out", str(tmp_path), "--clips", "1", "--frames", "1", "--size", "48"]) == 2
    assert "at least 2 frames" in capsys.readouterr().err
    with pytest.raises(InputError):
        generate(tmp_path, clips=1, frames=4, size=8, seed=0, progress=False)


def test_committed_examples_decode() -> None:
    videos = sorted(EXAMPLES.glob("*.mp4"))
    if not videos:
        pytest.skip("no committed examples")
    total = sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file())
    assert total < 3 * 2**20
    for video in videos:
        capture = cv2.VideoCapture(str(video))
        count, shape = 0, None
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            assert frame.shape[0] == frame.shape[1] >= 128
            count, shape = count + 1, frame.shape
        capture.release()
        assert count >= 30, video
    for photo in EXAMPLES.glob("source_*.png"):
        image = cv2.imread(str(photo))
        assert image is not None and image.shape == (512, 512, 3), photo
        first = cv2.imread(str(video.with_suffix(".png")))
        assert first is not None and first.shape == shape, video
