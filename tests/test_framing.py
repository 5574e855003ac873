"""Framing: crops cut the right pixels, coordinates map consistently, one crop holds the person in every frame."""

from __future__ import annotations

import numpy as np
import pytest

from internet.video.framing import Box, Crop, centre_crop, frame_source, frame_video, person_box


def _dot_image(h: int, w: int, x: int, y: int) -> np.ndarray:
    image = np.zeros((h, w, 3), np.uint8)
    image[y - 1 : y + 2, x - 1 : x + 2] = 255
    return image


@pytest.mark.parametrize("crop", [Crop(10, 20, 60), Crop(-30, 5, 120), Crop(50, -40, 90)])
def test_crop_pixels_and_coordinates_agree(crop):
    image = _dot_image(100, 140, 60, 30)
    out = crop.apply(image, 64)
    assert out.shape == (64, 64, 3)
    ys, xs = np.nonzero(out[..., 0] > 40)
    weights = out[ys, xs, 0].astype(float)
    found = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
    expected = crop.to_crop(np.array([60.0, 30.0]), 64)
    assert np.abs(found - expected).max() < 0.6
    assert np.allclose(crop.from_crop(expected, 64), [60, 30], atol=1e-3)


def test_crop_outside_replicates_edges():
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (200, 0, 0)
    image[:, 30:] = (0, 0, 200)
    out = Crop(-40, 0, 40).apply(image, 40)  # window entirely left of the image but overlapping rows
    assert (out[..., 0] == 200).all()
    out = Crop(-20, -20, 100).apply(image, 100)
    assert (out[:20, 25] == (200, 0, 0)).all() and (out[:20, 75] == (0, 0, 200)).all()


def test_crop_matches_clamped_indexing_wherever_the_window_lies():
    """Every pixel of the window is the image pixel at the clamped index (windows inside, across, beyond)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = rng.integers(1, 30, 2)
        image = rng.integers(0, 255, (h, w, 3), np.uint8)
        side, x0, y0 = int(rng.integers(1, 50)), int(rng.integers(-60, 60)), int(rng.integers(-60, 60))
        ys, xs = np.clip(np.arange(y0, y0 + side), 0, h - 1), np.clip(np.arange(x0, x0 + side), 0, w - 1)
        assert np.array_equal(Crop(x0, y0, side).apply(image, side), image[np.ix_(ys, xs)]), (h, w, x0, y0, side)
        mask = image[..., 0].astype(np.float32)
        assert np.array_equal(Crop(x0, y0, side).apply(mask, side), mask[np.ix_(ys, xs)])


def test_crop_scaled_matches_resized_image():
    crop = Crop(12, 8, 40)
    assert crop.scaled(2.0) == Crop(24, 16, 80)
    assert centre_crop(100, 60) == Crop(20, 0, 60)


def test_person_box_from_mask_and_from_joints():
    mask = np.zeros((50, 40), np.float32)
    mask[10:45, 12:30] = 1.0
    assert person_box(np.zeros((13, 2)), np.zeros(13), mask) == Box(12, 10, 30, 45)
    points = np.array([[20, 10], [15, 18], [25, 18], [20, 30], [18, 40], [22, 40]] + [[0, 0]] * 7, float)
    visibility = np.array([1] * 6 + [0] * 7, float)
    box = person_box(points, visibility)
    assert box.x0 < 15 and box.x1 > 25 and box.y0 < 10 and box.y1 > 40  # grown past the joints
    assert person_box(points, np.zeros(13)) is None


def test_one_crop_holds_a_walking_person_and_ignores_misses():
    boxes = [Box(10 + i, 30, 40 + i, 130) for i in range(40)] + [None, None]
    framing = frame_video(boxes, margin=0.1)
    assert framing is not None and framing.found == 40
    crop = framing.crop
    for b in boxes[1:-3]:  # all but the extreme percentiles lie fully inside
        assert crop.x0 <= b.x0 and b.x1 <= crop.x0 + crop.side
        assert crop.y0 <= b.y0 and b.y1 <= crop.y0 + crop.side
    assert crop.side == pytest.approx(100 * 1.2, abs=2)  # height-limited, plus 10% margin each side
    assert frame_video([None, None]) is None


def test_source_is_framed_like_the_driver():
    driving = frame_video([Box(100, 50, 160, 250)] * 5, margin=0.1)
    fraction = driving.typical.height / driving.crop.side
    source_box = Box(300, 400, 400, 800)  # a person twice as tall, elsewhere in a big photo
    crop = frame_source(source_box, driving)
    assert source_box.height / crop.side == pytest.approx(fraction, rel=0.02)
    person_centre = (source_box.centre[1] - crop.y0) / crop.side
    driver_centre = (driving.typical.centre[1] - driving.crop.y0) / driving.crop.side
    assert person_centre == pytest.approx(driver_centre, abs=0.01)
    alone = frame_source(source_box, None, margin=0.1)
    assert alone.side == pytest.approx(400 * 1.2, abs=2)


def test_crop_stays_inside_the_frame_where_it_can():
    tall = [Box(300, 20, 380, 460)] * 3  # a person filling a 480-high landscape frame, near its top
    framing = frame_video(tall, margin=0.1, frame_size=(640, 480))
    crop = framing.crop
    assert crop.side == 480  # the margin shrank rather than spill past the frame...
    assert crop.y0 == 0 and crop.x0 >= 0 and crop.x0 + crop.side <= 640
    for b in tall:
        assert crop.x0 <= b.x0 and b.x1 <= crop.x0 + crop.side and crop.y0 <= b.y0 and b.y1 <= crop.y0 + crop.side
    small = frame_video([Box(2, 2, 42, 82)], margin=0.1, frame_size=(640, 480)).crop
    assert small.x0 == 0 and small.y0 == 0  # slid inside instead of replicating edges


def test_a_crop_at_its_output_size_is_a_writable_copy():
    """Pass 2 decodes so that the crop comes out at its output size (a slice): the result must still be its
    own writable array, not a view of the decoder's read-only buffer (full-width windows are contiguous)."""
    frame = np.frombuffer(np.arange(12 * 8 * 3, dtype=np.uint8).tobytes(), np.uint8).reshape(12, 8, 3)
    out = Crop(0, 2, 8).apply(frame, 8)
    assert out.flags.writeable and out.flags.c_contiguous and not np.shares_memory(out, frame)
    assert np.array_equal(out, frame[2:10])


def test_fit_crop_grows_and_moves_as_little_as_it_must():
    from internet.video.framing import fit_crop

    crop = Crop(0, 0, 100)
    assert fit_crop(crop, Box(20, 20, 80, 80), 0.05) == crop  # already inside
    moved = fit_crop(crop, Box(20, -30, 80, 60), 0.05)  # hands above the top: the crop slides up
    assert moved.side == 100 and moved.y0 <= -35 and moved.x0 == 0
    grown = fit_crop(crop, Box(10, -60, 90, 95), 0.05)  # taller than the crop: it grows
    assert grown.side >= 155 / 0.9 and grown.y0 <= -60 - 0.05 * grown.side + 1
    assert grown.y0 + grown.side >= 95 + 0.05 * grown.side - 1


def test_raised_hands_stay_in_the_output_frame(tmp_path):
    """The driver raises both arms half-way through; in every output frame the animated
    figure's hands (the forearm segments and the hand beyond them) are inside the frame."""
    import cv2

    from internet.pipeline import AnimateOptions, Animator, KnownPose
    from internet.sources.poserig import Landmarks
    from internet.sources.poserig.rig import ANCHOR_NAMES
    from tests.media_factory import write_frames
    from tests.test_reference import _raise_arms
    from training.synthrunway import ClipSpec, generate_clip

    folder = generate_clip(ClipSpec(seed=10000, index=3, frames=12, size=96), tmp_path)
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted((folder / "frames").glob("*.png"))]
    video = write_frames(tmp_path / "drive.mp4", frames, fps=10)
    joints, masks = np.load(folder / "joints.npy"), np.load(folder / "mask.npy")
    # The photo: the first frame with its person high in the picture (little room above the head).
    photo = np.full((140, 96, 3), 255, np.uint8)
    photo[:96] = frames[0]
    source = Landmarks(joints[0], np.ones(13), np.pad(masks[0], ((0, 44), (0, 0))).astype(np.float32))
    driving = [Landmarks(_raise_arms(j) if t >= 6 else j, np.ones(13)) for t, j in enumerate(joints)]
    result = Animator(None, parallel=False, poses=KnownPose(source, driving)).animate(
        photo, video, AnimateOptions(size=96, relative=False), keep_frames=True
    )
    tips = []
    for frame in result.frames:
        m = frame.motion
        for name in ("left_forearm", "right_forearm"):
            k = ANCHOR_NAMES.index(name)
            tips.append(m.anchors_driving[k] + 1.1 * m.jacobians_driving[k][:, 0])  # wrist + hand
    tips = np.array(tips)
    assert tips.min() > -1.0 and tips.max() < 1.0, tips.min()
