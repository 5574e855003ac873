"""Forward skinning of a layer's triangle mesh and its rasterisation into a backward sampling map.

Vertices live in source space with source-space weights; each is moved by the blend of its bones'
affines (linear blend skinning). The moved triangles are rasterised on the low-res output grid,
interpolating each vertex's *source* position barycentrically, which gives a backward map (output pixel
-> source pixel) for that layer. One ``cv2.resize`` + ``cv2.remap`` then draws the layer at full size.

A joint bent far is where the layers tear if nothing stops them (three causes, each handled here):

- blending the two bones' rotations on the *inner* side of the bend pulls each part's skin off where that part
  lies, into the crook, and the vacated place shows the background: the inner side follows its main bone alone
  (:func:`inner_side`, ``rigid`` in :func:`skin_vertices`); the two parts overlap there, as they do on a real
  bent elbow, and the outer side is still blended (rounded);
- the triangles that joined those two rigid parts would be stretched across the fold and smear a streak of
  the limb over it (:func:`torn_triangles` leaves them out);
- where the mesh folds, neighbouring lattice cells sample the source far apart, and a bilinear ramp between
  them (upsampling, or averaging past the coverage's edge) samples the limb in between and draws specks and
  streaks of it in the open (:func:`upsample_map`, :func:`extend_map`).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

FAR = -1.0e5  # a source coordinate far outside the image: samples there are transparent

_BUCKETS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


@functools.cache
def _offsets(bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets (1, bucket**2) covering a bucket x bucket box, x then y."""
    oy, ox = np.mgrid[0:bucket, 0:bucket].astype(np.int32)
    return ox.reshape(1, -1), oy.reshape(1, -1)


def bone_angles(affines: np.ndarray) -> np.ndarray:
    """(B,) the rotation of each (B, 2, 3) affine: the angle of its closest rotation (polar decomposition)."""
    lin = affines[:, :, :2]
    return np.arctan2(lin[:, 1, 0] - lin[:, 0, 1], lin[:, 0, 0] + lin[:, 1, 1])


def _wrap(angle: np.ndarray) -> np.ndarray:
    return np.remainder(angle + np.pi, 2 * np.pi) - np.pi


def inner_side(theta: np.ndarray, bones: np.ndarray, side: np.ndarray) -> np.ndarray:
    """(V,) in [0, 1]: how far each vertex lies on the inner side of its hinge's bend in this pose.

    ``theta`` (B,) are the bones' angles (:func:`bone_angles`), ``bones`` (V, 2) each vertex's hinge as (parent,
    child) bone indices (-1: none) and ``side`` (V,) in [-1, 1] its side of the hinge's dividing line (positive:
    the side a child turning by a positive angle turns towards, which that turn folds in)."""
    parent, child = bones[:, 0], bones[:, 1]
    bend = np.where(parent >= 0, _wrap(theta[child] - theta[parent]), 0.0)
    return np.clip(side * np.sign(bend), 0.0, 1.0)


def skin_vertices(
    vertices: np.ndarray,
    weights: np.ndarray,
    affines: np.ndarray,
    pivots: np.ndarray | None = None,
    rigid: np.ndarray | None = None,
) -> np.ndarray:
    """Skin (V, 2) source pixels with (V, B) weights and (B, 2, 3) bone affines -> (V, 2) output pixels.

    Without ``pivots`` this is linear blend skinning, which collapses joints bent far (the blend of two
    rotations 150 degrees apart is nearly singular). With ``pivots`` (V, 2), the joint shared by each
    vertex's two main bones (NaN where they share none), rotations are blended as angles about that joint
    and the rest of each affine (its stretch) linearly: a bent elbow or a raised arm keeps its volume.

    ``rigid`` (V,) in [0, 1] (:func:`inner_side`) moves a vertex that far towards its main bone's own transform.
    Blending belongs on the *outer* side of a bend, which it rounds; on the inner side it pulls each part's
    skin off the place where that part lies, towards the other part (the vacated crook shows the background),
    while each part kept rigid there overlaps the other, as a real bent elbow does.
    """
    m = weights @ affines.reshape(len(affines), 6).astype(weights.dtype)  # (V, 6): blended affine per vertex
    x, y = vertices[:, 0], vertices[:, 1]
    lbs = np.stack([m[:, 0] * x + m[:, 1] * y + m[:, 2], m[:, 3] * x + m[:, 4] * y + m[:, 5]], axis=1)
    if pivots is None:
        return lbs
    theta = bone_angles(affines)
    cos, sin = np.cos(theta), np.sin(theta)
    unrotate = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)  # R(-theta)
    stretch = (unrotate @ affines[:, :, :2]).reshape(len(affines), 4)  # A = R(theta) P
    dom = np.argmax(weights, axis=1)
    turn = _wrap(theta[None, :] - theta[:, None])[dom]  # each bone's angle relative to the vertex's main bone
    blend = np.ones(len(vertices)) if rigid is None else 1.0 - rigid
    angle = theta[dom] + blend * (weights * turn).sum(axis=1)
    p = blend[:, None] * (weights @ stretch.astype(weights.dtype)) + (1.0 - blend[:, None]) * stretch[dom]  # (V, 4)
    c = np.where(np.isnan(pivots), vertices, pivots)
    c_out = np.stack(
        [m[:, 0] * c[:, 0] + m[:, 1] * c[:, 1] + m[:, 2], m[:, 3] * c[:, 0] + m[:, 4] * c[:, 1] + m[:, 5]], 1
    )
    dx, dy = x - c[:, 0], y - c[:, 1]
    sx, sy = p[:, 0] * dx + p[:, 1] * dy, p[:, 2] * dx + p[:, 3] * dy
    ca, sa = np.cos(angle), np.sin(angle)
    blended = c_out + np.stack([ca * sx - sa * sy, sa * sx + ca * sy], axis=1)
    return np.where(np.isnan(pivots[:, :1]), lbs, blended)


def torn_triangles(triangles: np.ndarray, dom: np.ndarray, rigid: np.ndarray) -> np.ndarray:
    """(T,) bool: triangles that join two rigid parts on the inner side of a bend (corners mostly rigid, with
    different main bones). Stretched across the fold, they would smear a streak of texture over both parts;
    the parts overlap there, so dropping them opens no hole."""
    r, d = rigid[triangles] > 0.5, dom[triangles]
    return ((r[:, 0] & r[:, 1] & (d[:, 0] != d[:, 1]))
            | (r[:, 1] & r[:, 2] & (d[:, 1] != d[:, 2]))
            | (r[:, 0] & r[:, 2] & (d[:, 0] != d[:, 2])))  # fmt: skip


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
    layer) and send everything further out to FAR.

    Each cell past the edge copies its nearest covered cell: an average of the covered cells around it would,
    where two sheets of a folded mesh meet, land between the places they sample in the source (inside the
    limb, say) and draw a speck of texture outside both."""
    if covered.all():
        return grid_map.astype(np.float32)
    # Every cell's nearest covered cell, as a label: OpenCV numbers the covered cells 1.. in raster order.
    dist, label = cv2.distanceTransformWithLabels(
        (~covered).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL
    )
    out = grid_map[covered][label - 1]
    out[dist > radius + 0.5] = FAR
    return out.astype(np.float32)


def upsample_map(grid_map: np.ndarray, scale: int, opacity: np.ndarray, jump: float = 3.0) -> np.ndarray:
    """The lattice's backward map at full size (bilinear), with its folds' transparent cells made safe first.

    Where a mesh folds over itself (or its rigid parts overlap at a bent joint) two neighbouring cells can
    sample the source far apart, more than ``jump`` cells; a bilinear ramp between them samples every source
    pixel in between. Between two transparent cells (the margins of two sheets) that ramp can cross the
    limb itself, and draws a thin streak of it out in the open. So next to such a jump, a transparent cell
    (``opacity``: the layer's alpha where each cell samples) takes the sample of an opaque neighbour (the
    opaque sheet's edge lies between them) or, without one, FAR: nothing is drawn there."""
    size = (grid_map.shape[1] * scale, grid_map.shape[0] * scale)
    inside = grid_map[..., :1] > FAR / 2
    flipped = np.where(inside, -grid_map, np.float32(FAR))  # FAR is never a neighbourhood's largest value
    up = cv2.dilate(grid_map, _CROSS) - grid_map  # per coordinate: how far a 4-neighbour lies above, and below
    down = cv2.dilate(flipped, _CROSS) - flipped
    spread = cv2.max(up, down).max(axis=-1)
    cells = (spread > jump * scale) & (opacity < 0.5) & inside[..., 0]
    if cells.any():
        grid_map = _fill_from_opaque(grid_map, opacity, cells)
    return cv2.resize(grid_map, size, interpolation=cv2.INTER_LINEAR)


def _fill_from_opaque(grid_map: np.ndarray, opacity: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """``cells`` take the sample of their most opaque 4-neighbour if it is opaque (alpha >= 0.5), else FAR."""
    h, w = opacity.shape
    ys, xs = np.nonzero(cells)
    ny = np.clip(ys[:, None] + np.array([-1, 1, 0, 0]), 0, h - 1)  # (N, 4) neighbours: up, down, left, right
    nx = np.clip(xs[:, None] + np.array([0, 0, -1, 1]), 0, w - 1)
    best = np.argmax(opacity[ny, nx], axis=1)
    by, bx = ny[np.arange(len(ys)), best], nx[np.arange(len(ys)), best]
    out = grid_map.copy()
    out[ys, xs] = np.where((opacity[by, bx] >= 0.5)[:, None], grid_map[by, bx], np.float32(FAR))
    return out


def output_to_grid(xy: np.ndarray, scale: int) -> np.ndarray:
    """Full-size pixel coordinates -> low-res grid coordinates (pixel centres at integers)."""
    return (xy + 0.5) / scale - 0.5
