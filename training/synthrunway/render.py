"""Layered 2D renderer for SynthRunway with exact backward flow and visibility.

Every part is a convex polygon with a texture, both in the part's local texel coordinates, and one 2D affine
map per frame (local -> screen). Frames are composited back to front. Because texture and outline live in
local coordinates, the backward flow of a screen pixel is exact: find the part that owns the pixel in frame
t, map the pixel to local coordinates with A_t^-1 and back to the screen of frame t-1 with A_{t-1}.

Conventions: pixel (row i, column j) has its centre at screen point (x=j, y=i); textures use the same
convention in texel units (as ``cv2.warpAffine``). A pixel is owned by a part when its centre is inside the
part's polygon; colours are antialiased with a one-pixel coverage ramp across soft edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

HARD_EDGE_TOLERANCE = 1e-3  # px: internal mesh edges overlap by this much so meshes have no cracks


@dataclass(frozen=True)
class Part:
    """One rigid layer: a convex polygon and its texture, both in local texel coordinates."""

    name: str
    surface: (
        int  # parts of one surface (the triangles of a skirt) count as one for visibility; 0 = background
    )
    polygon: np.ndarray  # (N, 2) float64 convex polygon, either orientation
    hard_edges: np.ndarray  # (N,) bool; edge i joins vertex i and i+1 inside a mesh: no antialiasing
    texture: np.ndarray  # (h, w, 3) float32 RGB in [0, 1]
    person: bool = True  # counts towards the person mask


@dataclass(frozen=True)
class FrameLayout:
    """Where every part is in one frame."""

    affines: np.ndarray  # (P, 2, 3) float64, local texel coordinates -> screen pixels, one per part
    order: np.ndarray  # (P,) int, part indices back to front; the background part comes first
    gain: float  # global lighting gain applied to the composited colours


@dataclass(frozen=True)
class RenderedFrame:
    image: np.ndarray  # (S, S, 3) uint8 RGB
    owner: np.ndarray  # (S, S) int16 index of the part whose polygon contains the pixel centre (front-most)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a (..., 2, 3) affine map."""
    linear = affine[..., :2]
    inverse = np.linalg.inv(linear)
    return np.concatenate([inverse, -inverse @ affine[..., 2:]], axis=-1)


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer ∘ inner for (..., 2, 3) affine maps."""
    linear = outer[..., :2] @ inner[..., :2]
    return np.concatenate([linear, outer[..., :2] @ inner[..., 2:] + outer[..., 2:]], axis=-1)


def _edge_planes(polygon: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Screen vertices and outward unit normals/offsets of each edge: distance(x) = normal·x - offset."""
    screen = polygon @ affine[:, :2].T + affine[:, 2]
    edges = np.roll(screen, -1, axis=0) - screen
    x, y = screen[:, 0], screen[:, 1]
    area2 = np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)  # outward for counter-clockwise (y up) area>0
    if area2 < 0:
        normals = -normals
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    offsets = np.sum(normals * screen, axis=1)
    return screen, normals, offsets


def _inside_and_distance(
    normals: np.ndarray, offsets: np.ndarray, hard: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance to the soft edges (positive outside) and the hard-edge inside test at points."""
    soft_distance = np.full(np.broadcast_shapes(xs.shape, ys.shape), -np.inf)
    hard_inside = np.ones_like(soft_distance, dtype=bool)
    for (nx, ny), offset, is_hard in zip(normals, offsets, hard, strict=True):
        distance = nx * xs + ny * ys - offset
        if is_hard:
            hard_inside &= distance <= HARD_EDGE_TOLERANCE
        else:
            soft_distance = np.maximum(soft_distance, distance)
    return soft_distance, hard_inside


def render_frame(parts: list[Part], layout: FrameLayout, size: int) -> RenderedFrame:
    """Composite all parts back to front; returns the 8-bit image and the per-pixel owning part."""
    image = np.zeros((size, size, 3), np.float32)
    owner = np.full((size, size), -1, np.int16)
    for index in layout.order:
        part, affine = parts[index], layout.affines[index]
        screen, normals, offsets = _edge_planes(part.polygon, affine)
        x0 = max(int(np.floor(screen[:, 0].min())) - 1, 0)
        y0 = max(int(np.floor(screen[:, 1].min())) - 1, 0)
        x1 = min(int(np.ceil(screen[:, 0].max())) + 2, size)
        y1 = min(int(np.ceil(screen[:, 1].max())) + 2, size)
        if x1 <= x0 or y1 <= y0:
            continue
        xs = np.arange(x0, x1, dtype=np.float64)[None, :]
        ys = np.arange(y0, y1, dtype=np.float64)[:, None]
        soft_distance, hard_inside = _inside_and_distance(normals, offsets, part.hard_edges, xs, ys)
        coverage = (np.clip(0.5 - soft_distance, 0.0, 1.0) * hard_inside).astype(np.float32)
        shifted = affine.copy()
        shifted[:, 2] -= (x0, y0)
        colour = cv2.warpAffine(
            part.texture, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        region = image[y0:y1, x0:x1]
        region += coverage[..., None] * (colour - region)
        owner[y0:y1, x0:x1][(soft_distance <= 0) & hard_inside] = index
    scaled = np.clip(image * (255.0 * layout.gain) + 0.5, 0, 255)
    return RenderedFrame(image=scaled.astype(np.uint8), owner=owner)


def front_surface(parts: list[Part], layout: FrameLayout, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Surface id of the front-most part whose polygon contains each point (xs, ys) in screen pixels."""
    surface = np.full(xs.shape, -1, np.int32)
    for index in layout.order:
        part = parts[index]
        screen, normals, offsets = _edge_planes(part.polygon, layout.affines[index])
        (x0, y0), (x1, y1) = screen.min(axis=0) - 0.01, screen.max(axis=0) + 0.01
        candidates = np.flatnonzero((xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1))
        if candidates.size == 0:
            continue
        soft_distance, hard_inside = _inside_and_distance(
            normals, offsets, part.hard_edges, xs.flat[candidates], ys.flat[candidates]
        )
        surface.flat[candidates[(soft_distance <= 0) & hard_inside]] = part.surface
    return surface


@dataclass(frozen=True)
class FlowTruth:
    flow: np.ndarray  # (S, S, 2) float32 backward flow: frame_t(x) ≈ frame_{t-1}(x + flow(x))
    visible: np.ndarray  # (S, S) bool: the surface seen at x in frame t is front-most at x + flow in t-1


def backward_flow(
    parts: list[Part], previous: FrameLayout, current: FrameLayout, owner: np.ndarray
) -> FlowTruth:
    """Exact backward flow and visibility of frame t (``current``, with its ``owner`` map) to frame t-1."""
    size = owner.shape[0]
    to_previous = compose_affine(previous.affines, invert_affine(current.affines))  # (P, 2, 3)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    m = to_previous[owner]
    target_x = m[..., 0, 0] * xs + m[..., 0, 1] * ys + m[..., 0, 2]
    target_y = m[..., 1, 0] * xs + m[..., 1, 1] * ys + m[..., 1, 2]
    flow = np.stack([target_x - xs, target_y - ys], axis=-1).astype(np.float32)
    in_image = (target_x >= -0.5) & (target_x <= size - 0.5) & (target_y >= -0.5) & (target_y <= size - 0.5)
    surfaces = np.array([part.surface for part in parts], np.int32)
    visible = in_image & (front_surface(parts, previous, target_x, target_y) == surfaces[owner])
    return FlowTruth(flow=flow, visible=visible)


def person_mask(parts: list[Part], owner: np.ndarray) -> np.ndarray:
    """Pixels owned by a part of the person."""
    is_person = np.array([part.person for part in parts], bool)
    return is_person[owner]
