"""Forward skinning of a layer's triangle mesh and its rasterisation into a backward sampling map.

Vertices live in source space with source-space weights; each is moved by the blend of its bones'
affines (linear blend skinning). The moved triangles are rasterised on the low-res output grid,
interpolating each vertex's *source* position barycentrically, which gives a backward map (output pixel
-> source pixel) for that layer. One ``cv2.resize`` + ``cv2.remap`` then draws the layer at full size.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

FAR = -1.0e5  # a source coordinate far outside the image: samples there are transparent

_BUCKETS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


@functools.cache
def _offsets(bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets (1, bucket**2) covering a bucket x bucket box, x then y."""
    oy, ox = np.mgrid[0:bucket, 0:bucket].astype(np.int32)
    return ox.reshape(1, -1), oy.reshape(1, -1)


def skin_vertices(
    vertices: np.ndarray, weights: np.ndarray, affines: np.ndarray, pivots: np.ndarray | None = None
) -> np.ndarray:
    """Skin (V, 2) source pixels with (V, B) weights and (B, 2, 3) bone affines -> (V, 2) output pixels.

    Without ``pivots`` this is linear blend skinning, which collapses joints bent far (the blend of two
    rotations 150 degrees apart is nearly singular). With ``pivots`` (V, 2), the joint shared by each
    vertex's two main bones (NaN where they share none), rotations are blended as angles about that joint
    and the rest of each affine (its stretch) linearly: a bent elbow or a raised arm keeps its volume.
    """
    m = weights @ affines.reshape(len(affines), 6).astype(weights.dtype)  # (V, 6): blended affine per vertex
    x, y = vertices[:, 0], vertices[:, 1]
    lbs = np.stack([m[:, 0] * x + m[:, 1] * y + m[:, 2], m[:, 3] * x + m[:, 4] * y + m[:, 5]], axis=1)
    if pivots is None:
        return lbs
    lin = affines[:, :, :2]
    theta = np.arctan2(lin[:, 1, 0] - lin[:, 0, 1], lin[:, 0, 0] + lin[:, 1, 1])  # closest rotation per bone
    cos, sin = np.cos(theta), np.sin(theta)
    unrotate = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)  # R(-theta)
    stretch = (unrotate @ lin).reshape(len(affines), 4)  # A = R(theta) P
    dom = np.argmax(weights, axis=1)
    wrapped = np.remainder(theta[None, :] - theta[:, None] + np.pi, 2 * np.pi) - np.pi  # (B, B): bone j from bone i
    turn = wrapped[dom]  # each bone's angle relative to the vertex's main bone
    angle = theta[dom] + (weights * turn).sum(axis=1)
    p = weights @ stretch.astype(weights.dtype)  # (V, 4)
    c = np.where(np.isnan(pivots), vertices, pivots)
    c_out = np.stack(
        [m[:, 0] * c[:, 0] + m[:, 1] * c[:, 1] + m[:, 2], m[:, 3] * c[:, 0] + m[:, 4] * c[:, 1] + m[:, 5]], 1
    )
    dx, dy = x - c[:, 0], y - c[:, 1]
    sx, sy = p[:, 0] * dx + p[:, 1] * dy, p[:, 2] * dx + p[:, 3] * dy
    ca, sa = np.cos(angle), np.sin(angle)
    blended = c_out + np.stack([ca * sx - sa * sy, sa * sx + ca * sy], axis=1)
    return np.where(np.isnan(pivots[:, :1]), lbs, blended)


def rasterise(
    xy: np.ndarray,
    uv: np.ndarray,
    priority: np.ndarray,
    h: int,
    w: int,
    plane: np.ndarray | None = None,
    planes: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise triangles onto an (h, w) grid whose pixel centres are at integer coordinates.

    ``xy`` (T, 3, 2) are the triangles' corners on the grid, ``uv`` (T, 3, 2) the values to interpolate
    (source positions). Where triangles overlap, the higher ``priority`` wins. Returns the interpolated
    (h, w, 2) float32 map and the (h, w) coverage mask. With ``plane`` (T,), triangle t draws on grid
    ``plane[t]`` of ``planes`` independent grids, and the results are (planes, h, w, 2) and (planes, h, w):
    every layer of a mesh in one call (8x fewer, larger array operations).
    """
    out = np.zeros((planes * h * w, 2), np.float32)
    covered = np.zeros(planes * h * w, bool)
    offset = np.zeros(len(xy), np.int64) if plane is None else np.asarray(plane, np.int64) * (h * w)
    xy = xy.astype(np.float32)
    corner0, corner1, corner2 = xy[:, 0], xy[:, 1], xy[:, 2]  # (reductions over an axis of 3 are slow)
    lo = np.floor(np.minimum(np.minimum(corner0, corner1), corner2)).astype(np.int32)
    hi = np.ceil(np.maximum(np.maximum(corner0, corner1), corner2)).astype(np.int32)
    on_grid = (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] < w) & (lo[:, 1] < h)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.array([w - 1, h - 1], np.int32))
    extent = (hi - lo).max(axis=1) + 1
    a = xy[:, 0]
    v0, v1 = xy[:, 1] - a, xy[:, 2] - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    usable = on_grid & (np.abs(den) > 1e-9)
    inv_den = np.where(usable, 1.0 / np.where(usable, den, 1.0), 0.0).astype(np.float32)
    from_corner = (lo - a).astype(np.float32)  # (T, 2) the box's first pixel relative to corner 0
    idx_parts, val_parts, pri_parts = [], [], []
    previous = 0
    for bucket in _BUCKETS:
        sel = np.nonzero(usable & (extent > previous) & (extent <= bucket))[0]
        if bucket == _BUCKETS[-1]:
            sel = np.nonzero(usable & (extent > previous))[0]  # huge triangles: drawn clipped to the bucket
        previous = bucket
        if len(sel) == 0:
            continue
        ox, oy = _offsets(bucket)
        # Candidate pixel minus the triangle's first corner, in float32 throughout (int32 + float32 would
        # promote every candidate array to float64); pixel indices only for the pixels found inside.
        dx = from_corner[sel, 0, None] + ox.astype(np.float32)
        dy = from_corner[sel, 1, None] + oy.astype(np.float32)
        inv = inv_den[sel, None]
        l1 = (dx * v1[sel, 1, None] - v1[sel, 0, None] * dy) * inv
        l2 = (v0[sel, 0, None] * dy - dx * v0[sel, 1, None]) * inv
        eps = -1e-4
        t_idx, k_idx = np.nonzero((l1 >= eps) & (l2 >= eps) & (l1 + l2 <= 1.0 - eps))
        tri = sel[t_idx]
        px, py = lo[tri, 0] + ox[0, k_idx], lo[tri, 1] + oy[0, k_idx]
        keep = (px < w) & (py < h)
        t_idx, k_idx, tri, px, py = t_idx[keep], k_idx[keep], tri[keep], px[keep], py[keep]
        b1, b2 = l1[t_idx, k_idx, None], l2[t_idx, k_idx, None]
        corners = uv[tri]
        val_parts.append(corners[:, 0] + b1 * (corners[:, 1] - corners[:, 0]) + b2 * (corners[:, 2] - corners[:, 0]))
        idx_parts.append(offset[tri] + py * w + px)
        pri_parts.append(priority[tri])
    if idx_parts:
        idx, val, pri = np.concatenate(idx_parts), np.concatenate(val_parts), np.concatenate(pri_parts)
        order = np.argsort(pri, kind="stable")  # later writes win: highest priority last
        out[idx[order]] = val[order]
        covered[idx] = True
    if plane is None:
        return out.reshape(h, w, 2), covered.reshape(h, w)
    return out.reshape(planes, h, w, 2), covered.reshape(planes, h, w)


def extend_map(grid_map: np.ndarray, covered: np.ndarray, radius: int = 2) -> np.ndarray:
    """Continue a backward map a few pixels past its coverage (so bilinear upsampling stays inside the
    layer) and send everything further out to FAR."""
    k = 2 * radius + 1
    cov = covered.astype(np.float32)
    num = cv2.boxFilter(grid_map * cov[..., None], -1, (k, k), normalize=False)
    den = cv2.boxFilter(cov, -1, (k, k), normalize=False)
    extended = num / np.maximum(den, 1e-6)[..., None]
    out = np.where(covered[..., None], grid_map, np.where(den[..., None] > 0, extended, FAR))
    return out.astype(np.float32)


def output_to_grid(xy: np.ndarray, scale: int) -> np.ndarray:
    """Full-size pixel coordinates -> low-res grid coordinates (pixel centres at integers)."""
    return (xy + 0.5) / scale - 0.5
