"""Overlays draw what they claim, and the warp-error diagnostic separates steady renders from flicker."""

from __future__ import annotations

import cv2
import numpy as np

from internet.sources.frames import FrameMotion, FrameResult
from internet.video.overlays import (
    dominant_weight_map,
    draw_anchors,
    flow_colour,
    heatmap,
    overlay_panel,
    palette,
    side_by_side,
)
from internet.video.temporal import WarpErrorMeter


def _identity(h: int, w: int) -> np.ndarray:
    return np.stack(np.meshgrid(np.linspace(-1, 1, w), np.linspace(-1, 1, h)), -1).astype(np.float32)


def test_anchor_dots_and_axes_land_where_the_coordinates_say():
    image = np.zeros((101, 101, 3), np.uint8)
    anchors = np.array([[0.0, 0.0], [-0.5, 0.5]], np.float32)
    jacobians = np.array([np.eye(2), np.eye(2)], np.float32)
    out = draw_anchors(image, anchors, jacobians, axis_scale=0.6)
    assert (image == 0).all(), "input must not be modified"
    colours = palette(2)
    assert (out[50, 50] == colours[0]).all()  # (0, 0) is the centre pixel
    assert (out[75, 25] == colours[1]).all()  # (-0.5, 0.5) is x = 25, y = 75
    for y, x in [(50, 70), (70, 50)]:  # along the first (+x) and second (+y) axes; antialiased lines
        assert np.abs(out[y, x].astype(int) - colours[0]).max() < 40
    assert (out[30, 50] == 0).all()  # nothing in the -y direction


def test_heatmap_is_monotone_and_sized():
    values = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    image = heatmap(values, 32)
    assert image.shape == (32, 32, 3)
    brightness = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[::8, ::8].ravel().astype(int)
    assert (np.diff(brightness) > 0).all()


def test_dominant_weight_colours_follow_the_argmax():
    weights = np.zeros((4, 8, 8), np.float32)
    weights[2, :, :4] = 1.0  # anchor 2 (index 1 in the anchor palette) owns the left half
    weights[0, :, 4:] = 1.0  # background owns the right half
    image = dominant_weight_map(weights, 16)
    assert (image[:, :8] == palette(3)[1]).all()
    assert (image[:, 8:] == 60).all()


def test_flow_colour_is_white_at_rest_and_opposite_hues_for_opposite_motion():
    identity = _identity(8, 8)
    assert (flow_colour(identity, 8) == 255).all()
    shift = np.zeros_like(identity)
    shift[..., 0] = 0.3
    right, left = flow_colour(identity + shift, 8), flow_colour(identity - shift, 8)
    hue_right = cv2.cvtColor(right, cv2.COLOR_RGB2HSV)[4, 4, 0].astype(int)
    hue_left = cv2.cvtColor(left, cv2.COLOR_RGB2HSV)[4, 4, 0].astype(int)
    assert abs(abs(hue_right - hue_left) - 90) <= 3  # 180° apart on OpenCV's 0..180 hue scale
    assert (right != 255).any()


def _frame(size: int = 64, k: int = 3) -> FrameResult:
    rng = np.random.default_rng(0)
    h = size // 4
    weights = rng.random((k + 1, h, h)).astype(np.float32)
    motion = FrameMotion(
        anchors_source=rng.uniform(-0.8, 0.8, (k, 2)).astype(np.float32),
        anchors_driving=rng.uniform(-0.8, 0.8, (k, 2)).astype(np.float32),
        jacobians_source=np.tile(np.eye(2, dtype=np.float32) * 0.2, (k, 1, 1)),
        jacobians_driving=np.tile(np.eye(2, dtype=np.float32) * 0.2, (k, 1, 1)),
        weights=weights / weights.sum(0),
        flow=_identity(h, h),
        confidence=rng.random((h, h)).astype(np.float32),
    )
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return FrameResult(index=3, output=image, driving=image[::-1].copy(), motion=motion)


def test_panels_have_the_documented_layout():
    frame = _frame(64)
    panel = overlay_panel(frame, frame.output, tile=32)
    assert panel.shape == (64, 128, 3)
    assert (panel[:32, 64:96][20:, :] == cv2.resize(frame.output, (32, 32), interpolation=cv2.INTER_AREA)[20:]).all()
    sbs = side_by_side(frame.output, frame.driving, frame.output)
    assert sbs.shape == (64, 192, 3) and (sbs[:, 128:] == frame.output).all()


def _texture(size: int, shift: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 255, (size, size + 40, 3), dtype=np.uint8), (0, 0), 2.0)
    return np.ascontiguousarray(base[:, 20 - shift : 20 - shift + size])


def test_warp_error_separates_following_from_flicker():
    confidence = np.ones((16, 16), np.float32)

    def run(outputs: list[np.ndarray], drivings: list[np.ndarray]) -> float:
        meter = WarpErrorMeter(resolution=64)
        means = [meter.update(d, o, confidence).mean for d, o in zip(drivings, outputs)]
        assert np.isnan(means[0])
        return float(np.mean(means[1:]))

    moving = [_texture(64, 2 * t) for t in range(6)]  # the driver pans right
    following = run(moving, moving)  # output moves exactly like the driver
    frozen = run([moving[0]] * 6, moving)  # output ignores the motion
    rng = np.random.default_rng(2)
    flicker = run([np.clip(m.astype(int) + rng.integers(-60, 60, m.shape), 0, 255).astype(np.uint8) for m in moving],
                  moving)  # fmt: skip
    assert following < 0.5 * frozen and following < 0.5 * flicker
    zero_weight = WarpErrorMeter(resolution=64)
    zero_weight.update(moving[0], moving[0], confidence * 0)
    assert zero_weight.update(moving[1], moving[0], confidence * 0).map.max() == 0.0
