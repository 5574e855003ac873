"""The vacated background: where a limb moved away, the output shows the photo's background
(a clean plate: the person masked out generously and inpainted), never the limb's old pixels, even though the
segmentation mask (like MediaPipe's) stops short of the limb's soft edges."""

from __future__ import annotations

import cv2
import numpy as np

from internet.sources.poserig import Landmarks, PoseRig, RigOptions
from tests.test_poserig import STANDING, _pose, draw_figure

SCALE = 3  # the 96 px test figure at 288 px


def _photo(points: np.ndarray):
    """The test figure with anti-aliased edges (as in a photo), its true mask, the true background, and a
    segmentation mask that misses the outer pixel or two of every edge (as MediaPipe's does)."""
    size = 96 * SCALE
    image, mask = draw_figure(points / 1.0)  # 96 px, hard edges
    image = cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)
    mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    yy, xx = np.mgrid[0:size, 0:size] // SCALE
    background = (np.stack([60 + xx, 90 + 0 * xx, 60 + yy], -1) + 25 * ((xx // 6 + yy // 6) % 2)[..., None]).astype(
        np.float32
    )
    soft = cv2.GaussianBlur(mask, (0, 0), 2.0)
    photo = np.where(mask[..., None] > 0, image, background).astype(np.float32)
    photo = (soft[..., None] * photo + (1 - soft[..., None]) * background).round().astype(np.uint8)
    photo[mask > 0] = image[mask > 0]
    tight = cv2.erode((soft > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(np.float32)
    return photo, mask > 0, background, cv2.GaussianBlur(tight, (0, 0), 0.8)


def test_a_raised_arm_leaves_background_behind_not_a_pale_copy_of_itself():
    photo, truth, background, seg = _photo(STANDING)
    points = STANDING * SCALE + (SCALE - 1) / 2
    rig = PoseRig(photo, Landmarks(points, np.ones(13), seg), RigOptions(smooth=False))
    rig.set_reference(Landmarks(points, np.ones(13)))
    moved = _pose(right_arm=150) * SCALE + (SCALE - 1) / 2  # the arm swings up and away from the body
    output, _ = rig.render(Landmarks(moved, np.ones(13)))
    _, new_mask = draw_figure(_pose(right_arm=150))
    new_person = cv2.resize(new_mask, truth.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    near_new = cv2.dilate(new_person.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    # The old arm and its soft edge, wherever the new figure does not cover it.
    _, arm_only = draw_figure(STANDING)
    old = cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    vacated = old & ~near_new
    assert vacated.sum() > 200
    out = output.astype(np.float32)
    arm_colour = np.array([220, 160, 130], np.float32)
    to_arm = np.linalg.norm(out - arm_colour, axis=-1)
    to_background = np.linalg.norm(out - background, axis=-1)
    ghost = (to_arm < to_background) & vacated
    assert ghost.sum() / vacated.sum() < 0.01, ghost.sum() / vacated.sum()
    # The fill looks like the surrounding background (its colours, a blur of its checks at most).
    assert np.abs(out - background)[vacated].mean() < 18, np.abs(out - background)[vacated].mean()
    # Nowhere in the vacated region is as bright as a lit arm edge against this dark background.
    assert np.percentile(to_background[vacated], 99) < 80, np.percentile(to_background[vacated], 99)
