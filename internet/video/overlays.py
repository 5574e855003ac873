"""Pictures of the motion: anchors with Jacobian axes, confidence heatmaps, dominant weights, flow colour.

Everything takes the NumPy :class:`~internet.sources.frames.FrameMotion` fields, so the same overlays work for the
INTERNet model and the pose rig. Coordinates are normalised to [-1, 1] with ``align_corners=True``.
All functions return new (H, W, 3) uint8 RGB images and never modify their inputs.
"""

from __future__ import annotations

import colorsys
import functools

import cv2
import numpy as np

from internet.sources.frames import FrameResult

FLOW_FULL_SCALE = 0.5  # displacement (normalised units) drawn at full saturation, fixed so frames compare


@functools.lru_cache(maxsize=16)
def palette(count: int) -> np.ndarray:
    """``count`` well-separated bright RGB colours (golden-ratio hues), uint8 (count, 3); read-only (cached)."""
    hues = (np.arange(count) * 0.618034) % 1.0
    colours = np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.85, 1.0)] for h in hues], np.uint8)
    colours.flags.writeable = False
    return colours


def to_pixels(points: np.ndarray, size: int) -> np.ndarray:
    """[-1, 1] coordinates -> pixel coordinates in a size² image (align_corners=True)."""
    return (np.asarray(points, np.float64) + 1.0) * (size - 1) / 2.0


def draw_anchors(
    image: np.ndarray,
    anchors: np.ndarray,
    jacobians: np.ndarray | None = None,
    axis_scale: float = 0.5,
) -> np.ndarray:
    """Anchors (K, 2) as coloured dots; with ``jacobians`` (K, 2, 2) each also gets its two local axes
    (the Jacobian's columns times ``axis_scale``, in normalised units), as in the paper's Fig 2."""
    out = image.copy()
    size = image.shape[0]
    colours = [tuple(int(c) for c in colour) for colour in palette(len(anchors))]
    radius = max(2, size // 100)
    thickness = max(1, size // 256)
    anchors = np.asarray(anchors, np.float64)
    centres = [tuple(p) for p in _pixel_points(anchors, size).tolist()]
    if jacobians is not None:  # the tips of each anchor's two axes (its Jacobian's columns), (K, 2, 2)
        tips = _pixel_points(anchors[:, None, :] + axis_scale * np.swapaxes(np.asarray(jacobians), 1, 2), size)
        for k, centre in enumerate(centres):
            for tip in tips[k].tolist():
                cv2.line(out, centre, tuple(tip), colours[k], thickness, cv2.LINE_AA)
    for k, centre in enumerate(centres):
        cv2.circle(out, centre, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(out, centre, radius, colours[k], -1, cv2.LINE_AA)
    return out


def _pixel_points(points: np.ndarray, size: int) -> np.ndarray:
    """[-1, 1] points (..., 2) -> integer pixel coordinates for OpenCV, clipped to a range it can draw."""
    return np.rint(np.clip(to_pixels(points, size), -1e4, 1e4)).astype(np.int64)


def heatmap(values: np.ndarray, size: int, vmax: float = 1.0) -> np.ndarray:
    """A (h, w) map in [0, vmax] as an inferno heatmap of size² (bright = high)."""
    scaled = np.clip(np.asarray(values, np.float32) / max(vmax, 1e-8), 0.0, 1.0)
    grey = cv2.resize((scaled * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def dominant_weight_map(weights: np.ndarray, size: int) -> np.ndarray:
    """Colour each pixel by the anchor with the largest weight omega_k (Eq 5), darker where it is uncertain.

    ``weights`` is (K+1, h, w) with index 0 the background, drawn dark grey; anchor k gets the colour that
    :func:`draw_anchors` gives anchor k."""
    weights = np.asarray(weights, np.float32)
    colours = np.concatenate([np.array([[60, 60, 60]], np.uint8), palette(weights.shape[0] - 1)])
    winner = weights.argmax(axis=0)
    strength = weights.max(axis=0)[..., None]
    image = (colours[winner].astype(np.float32) * (0.35 + 0.65 * strength)).astype(np.uint8)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)


def flow_colour(flow: np.ndarray, size: int, full_scale: float = FLOW_FULL_SCALE) -> np.ndarray:
    """A sampling grid (h, w, 2) as the usual colour wheel of its displacement from identity:
    hue = direction, saturation = magnitude (``full_scale`` normalised units = fully saturated)."""
    flow = np.asarray(flow, np.float32)
    h, w = flow.shape[:2]
    ys, xs = np.linspace(-1, 1, h, dtype=np.float32), np.linspace(-1, 1, w, dtype=np.float32)
    identity = np.stack(np.meshgrid(xs, ys), axis=-1)
    dx, dy = (flow - identity)[..., 0], (flow - identity)[..., 1]
    magnitude, angle = cv2.cartToPolar(dx, dy, angleInDegrees=True)
    hsv = np.empty((h, w, 3), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)  # OpenCV hue is 0..180
    hsv[..., 1] = np.clip(magnitude / full_scale * 255, 0, 255).astype(np.uint8)
    hsv[..., 2] = 255
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)


def label(image: np.ndarray, text: str) -> np.ndarray:
    """Write a small caption in the top-left corner (white on a dark band)."""
    out = image.copy()
    scale = max(0.3, image.shape[0] / 640)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    out[: th + base + 4, : tw + 6] //= 3
    cv2.putText(out, text, (3, th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def side_by_side(source: np.ndarray, driving: np.ndarray, output: np.ndarray) -> np.ndarray:
    """source | driving | result, all at the output's size."""
    size = output.shape[0]
    tiles = [t if t.shape[0] == size else cv2.resize(t, (size, size), interpolation=cv2.INTER_AREA)
             for t in (source, driving, output)]  # fmt: skip
    return np.hstack(tiles)


def overlay_panel(
    frame: FrameResult,
    source: np.ndarray,
    warp_error: np.ndarray | None = None,
    tile: int | None = None,
) -> np.ndarray:
    """The diagnostic panel of one frame, 2 rows × 4 tiles of ``tile``² (default: half the output size):

    source + anchors/axes | driving + anchors/axes | output | warp error (weighted by M_t)
    confidence M         | dominant weight         | flow colour | output + driving anchors
    """
    m = frame.motion
    tile = tile or max(64, frame.output.shape[0] // 2)
    tile -= tile % 2

    def fit(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA)

    error = np.zeros((2, 2), np.float32) if warp_error is None else warp_error
    top = [
        label(draw_anchors(fit(source), m.anchors_source, m.jacobians_source), "source"),
        label(draw_anchors(fit(frame.driving), m.anchors_on_driving, m.jacobians_driving), "driving"),
        label(fit(frame.output), f"output {frame.index}"),
        label(heatmap(error, tile, vmax=0.25), "warp error x M"),
    ]
    bottom = [
        label(heatmap(m.confidence, tile), "confidence M"),
        label(dominant_weight_map(m.weights, tile), "dominant weight"),
        label(flow_colour(m.flow, tile), "flow"),
        label(draw_anchors(fit(frame.output), m.anchors_driving), "output + anchors"),
    ]
    return np.vstack([np.hstack(top), np.hstack(bottom)])
