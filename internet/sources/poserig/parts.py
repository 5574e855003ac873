"""Source-side work of the pose rig, done once per video: body-part layers, textures, mesh and weights.

The person (source photo + mask + joints) is split into layers drawn back to front:

    left leg, right leg, torso/garment, head, left upper arm, left forearm, right upper arm, right forearm

Labels: nearest body part by capsule-normalised distance (capsules centred one typical half-width inside
each limb's outer edge, since landmarks sit off-centre), refined by colour where an arm lies on the body,
and with the mask's thin false "person" gap between an arm and the body dropped.

Each layer has a *core* (the pixels it owns) and a hidden *extension* under the layers in front of it, so
that part seams never open onto the background: the torso layer covers the whole silhouette under the
arms (what an arm hides is filled from the torso's own colours), reaches under the head and shoulders
(with the real shoulder pixels: the shoulder cap is drawn by the torso, not by the turning upper arm),
the upper arms reach under their forearms at the elbow and the legs reach up under the garment. Long
garments (rows below the hips where the gap between the legs is covered) belong to the torso layer and
are skinned smoothly to the pelvis, thighs and shins, so a dress follows the legs instead of splitting.

Skinning weights are computed in *source* space (forward skinning), per layer, from the bones that may
move it (an arm lying on the dress does not drag the dress). Each layer is triangulated on a regular
lattice (two triangles per cell) that never spans two layers; a vertex blending two bones that share a
joint remembers that joint as its pivot, for angle-blended skinning (:func:`mesh.skin_vertices`), and at an
elbow or a knee which side of the bend it lies on (the side the joint folds towards is kept rigid).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from internet.skeleton import JOINT
from internet.sources.poserig.retarget import BONE, LIMB_SEGMENTS, NECK, PELVIS, SKIN_BONES, extend, torso_length

LAYER_NAMES: tuple[str, ...] = (
    "left_leg", "right_leg", "torso", "head",
    "left_upper_arm", "left_forearm", "right_upper_arm", "right_forearm",
)  # fmt: skip
# Draw order inside a layer where it folds over itself: forearms/shins over upper arms/thighs over torso.
BONE_DEPTH = np.array([0, 0, 1, 1, 2, 1, 2, 1, 2, 1, 2], np.float32)  # SKIN_BONES order
# Typical limb half-widths as a fraction of the torso length (hands and feet are covered by the capsules).
HALF_WIDTH = {"upper_arm": 0.075, "forearm": 0.07, "thigh": 0.13, "shin": 0.085}
HIDDEN_RELIABILITY = 0.25  # confidence of texture that was filled in rather than seen
HINGE_RAMP = 0.04  # torso lengths from an elbow's or knee's dividing line to where its inner side is rigid


@dataclass
class SourceLayer:
    """One body-part layer of the source, ready to be skinned and drawn."""

    name: str
    texture: np.ndarray  # (S, S, 4) uint8: RGB (colours extended past the edge) + layer alpha
    alpha_low: np.ndarray  # (h, w) float32 layer alpha on the low-res grid
    reliability_low: np.ndarray  # (h, w) float32: 1 where the texture was seen, less where filled in
    weights_low: np.ndarray  # (h, w, B) float32 skinning weights on the low-res grid (B = len(SKIN_BONES))
    vertices: np.ndarray  # (V, 2) float64 source pixels (low-res pixel centres)
    vertex_weights: np.ndarray  # (V, B) float32
    pivots: np.ndarray  # (V, 2) joint shared by the vertex's two main bones (NaN: none, linear blending)
    hinge_bones: np.ndarray  # (V, 2) int: that joint's (parent, child) bones, -1 where none
    hinge_side: np.ndarray  # (V,) side of the joint's bend the vertex lies on, in [-1, 1]
    triangles: np.ndarray  # (T, 3) int32 vertex indices
    priority: np.ndarray  # (T,) int16: higher is drawn on top where the layer folds over itself


@dataclass
class SourceLayers:
    """Everything the rig precomputes from the source photo."""

    size: int  # S
    scale: int  # k: one mesh-lattice pixel is k x k image pixels
    grid: int  # h = ceil(S / k): the lattice is (h, h); its pixel j is centred on image pixel (j + 0.5) k - 0.5
    points: np.ndarray  # (13, 2) source joints in pixels
    layers: list[SourceLayer]  # back to front
    background: np.ndarray  # (S, S, 3) uint8, the person removed and filled in
    background_reliability_low: np.ndarray  # (h, w): 1 where the background was seen, low behind the person
    labels: np.ndarray  # (S, S) int8 core layer index per pixel, -1 outside the person (for overlays/tests)


def fill_from(image: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill pixels where ``known`` is False from the known ones (push-pull over an image pyramid)."""
    img = image.astype(np.float32)
    k = known.astype(np.float32)
    premult, weight = [img * (k[..., None] if img.ndim == 3 else k)], [k]
    while min(weight[-1].shape[:2]) > 2:
        premult.append(cv2.pyrDown(premult[-1]))
        weight.append(cv2.pyrDown(weight[-1]))
    w_last = weight[-1][..., None] if img.ndim == 3 else weight[-1]
    filled = premult[-1] / np.maximum(w_last, 1e-6)
    for level in range(len(premult) - 2, -1, -1):
        up = cv2.pyrUp(filled, dstsize=premult[level].shape[1::-1])
        w = weight[level][..., None] if img.ndim == 3 else weight[level]
        filled = premult[level] + up * np.clip(1.0 - w, 0.0, 1.0)
        filled = filled / np.maximum(w + np.clip(1.0 - w, 0.0, 1.0), 1e-6)
    mask = known[..., None] if img.ndim == 3 else known
    return np.where(mask, img, filled)


PLATE_MARGIN = 0.08  # the clean plate looks for the person's soft edge this far (torso lengths) past the mask
PLATE_MIN_CONTRAST = 10.0  # RGB distance from the background estimate that marks a pixel as the person's edge
PLATE_FLOOR = 0.5  # and this far below the ankles (torso lengths), for the feet's shadow or reflection


def clean_plate(
    image: np.ndarray, mask: np.ndarray, torso: float, ankles: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The photo without its person: ``(background uint8, known bool)``, ``known`` where the photo's own pixels
    were kept.

    A segmentation mask stops short of the person's soft edge (hair, anti-aliased limbs, a mask computed at a
    lower resolution), and whatever of the person is left outside it stays on the plate: a pale copy of an arm
    that has moved away, the old feet under the figure. So the hole is the mask (any pixel above
    0.05) grown by a pixel or two, then grown further, up to ``PLATE_MARGIN`` torso lengths (``PLATE_FLOOR``
    below the ``ankles``, where a shadow or a reflection of the feet lies), through pixels whose colour stands
    out from the background around them (more than ``PLATE_MIN_CONTRAST``, or four times the background's own
    spread there: a textured background needs more). The hole is inpainted (OpenCV's Telea method at up to 256 px,
    which continues edges and gradients into it) and the inpainting's low frequencies are evened out with a
    push-pull fill, so that a large hole has no streaks.
    """
    size = image.shape[0]
    hole = (mask > 0.05).astype(np.uint8)
    hole = cv2.dilate(hole, _disk(max(1.0, size / 256)))
    reach = max(3, int(round(PLATE_MARGIN * torso)))
    zone = cv2.dilate(hole, _disk(reach))
    steps = reach
    if ankles is not None:
        floor = max(reach, int(round(PLATE_FLOOR * torso)))
        for x, y in np.asarray(ankles, np.float64):
            x0, x1 = int(round(x - floor / 2)), int(round(x + floor / 2))
            cv2.rectangle(zone, (x0, int(round(y))), (x1, int(round(y + floor))), 1, -1)
        steps = floor
    zone = zone.astype(bool)
    if zone.all():
        return np.full_like(image, 255), np.zeros(image.shape[:2], bool)
    rgb = image.astype(np.float32)
    # The background around the zone continued into it, smoothed like the fill is (so that a texture's own
    # contrast, measured on the ring around the zone, is the same measure as the person's edge's inside it).
    estimate = cv2.GaussianBlur(fill_from(rgb, ~zone), (0, 0), max(1.0, reach / 2))
    ring = cv2.dilate(zone.astype(np.uint8), _disk(reach)).astype(bool) & ~zone
    contrast = np.linalg.norm(rgb - estimate, axis=-1)
    spread = float(np.median(contrast[ring])) if ring.any() else 0.0
    stands_out = (contrast > max(PLATE_MIN_CONTRAST, 4.0 * spread)) & zone
    for _ in range(steps):  # grow through the edge pixels connected to the hole
        grown = cv2.dilate(hole, _disk(1.0)) & stands_out.astype(np.uint8) | hole
        if np.array_equal(grown, hole):
            break
        hole = grown
    hole = hole.astype(bool)
    known = ~hole
    if not known.any():
        return np.full_like(image, 255), known
    small_side = min(size, 256)
    factor = small_side / size
    small = cv2.resize(image, (small_side, small_side), interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole.astype(np.uint8), (small_side, small_side), interpolation=cv2.INTER_NEAREST)
    small_hole = cv2.dilate(small_hole, _disk(1.0))
    painted = cv2.inpaint(small, small_hole, max(3.0, 6 * factor), cv2.INPAINT_TELEA).astype(np.float32)
    painted = cv2.resize(painted, (size, size), interpolation=cv2.INTER_LINEAR)
    smooth = fill_from(rgb, known)
    detail = painted - cv2.GaussianBlur(painted, (0, 0), max(2.0, size / 64))
    filled = np.where(hole[..., None], cv2.GaussianBlur(smooth, (0, 0), 1.0) + 0.5 * detail, rgb)
    return np.clip(filled, 0, 255).round().astype(np.uint8), known


def _disk(r: float) -> np.ndarray:
    k = max(3, int(2 * round(r) + 1))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def segment_distance(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from points q (..., 2) to the segment a-b."""
    (ax, ay), (abx, aby) = a, b - a  # per coordinate plane: 3.7x faster than on interleaved (..., 2) arrays
    dx, dy = q[..., 0] - ax, q[..., 1] - ay
    t = np.clip((dx * abx + dy * aby) / max(float(abx * abx + aby * aby), 1e-9), 0.0, 1.0)
    ex, ey = dx - t * abx, dy - t * aby
    return np.sqrt(ex * ex + ey * ey)


def _distance(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Euclidean distance from points q (..., C) to one point p (C,), a coordinate plane at a time
    (``np.linalg.norm(q - p, axis=-1)`` on interleaved coordinates is 3-4x slower)."""
    total = np.zeros(q.shape[:-1], np.result_type(q.dtype, np.float32))
    for c in range(q.shape[-1]):
        diff = q[..., c] - p[c]
        total += diff * diff
    return np.sqrt(total)


def _inside_polygon(q: np.ndarray, poly: np.ndarray) -> np.ndarray:
    crossings = np.zeros(q.shape[:-1], bool)
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        straddle = (a[1] > q[..., 1]) != (b[1] > q[..., 1])
        x_cross = a[0] + (q[..., 1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1] + 1e-12)
        crossings ^= straddle & (q[..., 0] < x_cross)
    return crossings


def _edge_distance(q: np.ndarray, poly: np.ndarray) -> np.ndarray:
    return np.min([segment_distance(q, poly[i], poly[(i + 1) % len(poly)]) for i in range(len(poly))], axis=0)


def polygon_distance(q: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance from points q (..., 2) to a polygon (0 inside)."""
    return np.where(_inside_polygon(q, poly), 0.0, _edge_distance(q, poly))


@dataclass
class _Body:
    """Source-space geometry shared by labelling and weights."""

    ext: np.ndarray  # (15, 2) joints + neck + pelvis
    torso: float  # torso length T in pixels
    up: np.ndarray  # unit vector pelvis -> neck
    torso_poly: np.ndarray  # (4, 2)
    segments: dict[str, tuple[np.ndarray, np.ndarray]]  # limb and head segments (hands/feet included)
    radius: dict[str, float]  # capsule radius per segment (limbs, head) and the torso's
    hem: float  # garment hem below the pelvis, along -up, in pixels (0 when legs part right away)


def _body(points: np.ndarray, mask: np.ndarray) -> _Body:
    e = extend(points)
    t_len = max(torso_length(points), 4.0)
    up = (e[NECK] - e[PELVIS]) / t_len
    ls, rs, lh, rh = (e[JOINT[n]] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    centre = (ls + rs + lh + rh) / 4
    segs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    radius = {"torso": 0.1 * t_len}
    for name, (a, b) in LIMB_SEGMENTS.items():
        pa, pb = e[a], e[b]
        # Landmarks are not always on the limb's centre line: put the line one typical half-width inside
        # the limb's outer edge (the edge that touches the background).
        half = HALF_WIDTH[name.split("_", 1)[1]] * t_len
        outer, normal = _outer_half_width(mask, pa, pb, centre, 3 * half)
        if len(outer):
            shift = np.clip(float(np.median(outer)) - half, -0.5 * half, half)
            pa, pb = pa + shift * normal, pb + shift * normal
        if name.endswith("forearm"):
            pb = pb + 0.6 * (pb - pa)  # the hand
        elif name.endswith("shin"):
            pb = pb + 0.15 * (pb - pa)  # the foot
        segs[name] = (pa, pb)
        radius[name] = 1.6 * half
    nose = e[JOINT["nose"]]
    head_axis = nose - e[NECK]
    segs["head"] = (e[NECK] + 0.3 * head_axis, nose + 0.6 * head_axis)
    radius["head"] = max(0.3 * t_len, 0.8 * float(np.linalg.norm(head_axis)))
    return _Body(e, t_len, up, np.stack([ls, rs, rh, lh]), segs, radius, _garment_hem(e, up, t_len, mask))


def _outer_half_width(
    mask: np.ndarray, a: np.ndarray, b: np.ndarray, centre: np.ndarray, limit: float
) -> tuple[np.ndarray, np.ndarray]:
    """Distances from points along a bone to the mask's edge on the side away from the body centre, and
    that side's unit normal.

    The outer side of a limb is the one that touches the background (its inner side may lie on the body),
    so this measures the limb's half-width even when it rests on the torso or a dress.
    """
    h, w = mask.shape
    u = (b - a) / (np.linalg.norm(b - a) + 1e-9)
    n = np.array([-u[1], u[0]])
    mid = (a + b) / 2
    if (mid - centre) @ n < 0:
        n = -n
    pts = a + np.linspace(0.2, 0.9, 8)[:, None] * (b - a)  # (8, 2)
    steps = np.arange(0.0, limit + 1.0, 0.5)
    probe = np.round(pts[:, None] + steps[None, :, None] * n).astype(int)  # (8, T, 2)
    inside = (probe[..., 0] >= 0) & (probe[..., 0] < w) & (probe[..., 1] >= 0) & (probe[..., 1] < h)
    hit = np.zeros(inside.shape, bool)
    hit[inside] = mask[probe[..., 1][inside], probe[..., 0][inside]]
    first_out = np.argmin(hit, axis=1).astype(np.float64)  # first step outside the person
    first_out[hit.all(axis=1)] = len(steps) - 1
    return steps[first_out.astype(int)][hit[:, 0]], n  # only points that are on the person


def _garment_hem(e: np.ndarray, up: np.ndarray, t_len: float, mask: np.ndarray) -> float:
    """How far below the pelvis the gap between the legs stays covered (a dress, a coat, a skirt)."""
    h, w = mask.shape
    chains = [e[[JOINT[f"{s}_hip"], JOINT[f"{s}_knee"], JOINT[f"{s}_ankle"]]] for s in ("left", "right")]
    depth = [(e[PELVIS] - c) @ up for c in chains]  # distance below the pelvis of each chain point
    bottom = min(float(d[-1]) for d in depth)
    hem = 0.0
    for level in np.arange(0.0, bottom, max(1.0, t_len / 40)):
        pts = [np.array([np.interp(level, d, c[:, k]) for k in (0, 1)]) for d, c in zip(depth, chains)]
        gap = np.linalg.norm(pts[0] - pts[1])
        covered = True
        for f in (0.35, 0.5, 0.65):  # the middle third between the legs must be person
            x, y = np.round(pts[0] + f * (pts[1] - pts[0])).astype(int)
            covered &= bool(0 <= x < w and 0 <= y < h and mask[y, x])
        if not covered or gap < 1.0:
            break
        hem = float(level)
    return hem + 0.1 * t_len if hem > 0 else 0.0  # hems curve down between the legs


def _group_distances(q: np.ndarray, body: _Body) -> dict[str, np.ndarray]:
    """Per-bone distances (pixels) of points q (..., 2), plus the torso polygon distance."""
    d = {name: segment_distance(q, *seg) for name, seg in body.segments.items()}
    d["torso"] = polygon_distance(q, body.torso_poly)
    return d


def _labels(body: _Body, size: int, mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Core layer index per source pixel (LAYER_NAMES order), -1 outside the person.

    Nearest body part by capsule-normalised distance, with three rules: the head only above the neck, a
    garment's rows belong to the torso, and an arm's capsule wins over the body. On the capsule's outer
    band an arm pixel whose colour is closer to the nearby torso's than to the arm's core goes back to the
    torso (a dress edge along the arm must not leave with the arm).
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    q = np.stack([xs, ys], axis=-1)
    d = _group_distances(q, body)
    score = {
        "torso": d["torso"] / body.radius["torso"],
        "head": d["head"] / body.radius["head"],
    }
    r = body.radius
    for side in ("left", "right"):
        for part in ("upper_arm", "forearm"):
            score[f"{side}_{part}"] = d[f"{side}_{part}"] / r[f"{side}_{part}"]
        score[f"{side}_leg"] = np.minimum(
            d[f"{side}_thigh"] / r[f"{side}_thigh"], d[f"{side}_shin"] / r[f"{side}_shin"]
        )
    stack = np.stack([score[n] for n in LAYER_NAMES])
    labels = np.argmin(stack, axis=0).astype(np.int8)
    torso, head = LAYER_NAMES.index("torso"), LAYER_NAMES.index("head")
    above_neck = (q - body.ext[NECK]) @ body.up
    below_pelvis = (body.ext[PELVIS] - q) @ body.up
    labels[(labels == head) & (above_neck < 0.05 * body.torso)] = torso
    is_leg = (labels == LAYER_NAMES.index("left_leg")) | (labels == LAYER_NAMES.index("right_leg"))
    labels[is_leg & (below_pelvis < body.hem)] = torso  # the garment covers the legs down to its hem
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    torso_pixels = (labels == torso) & mask
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~mask
    c_bg = np.median(lab[ring], axis=0) if ring.sum() > 4 else None
    gap = np.zeros_like(mask)
    for side in ("left", "right"):  # an arm lying on the body still belongs to the arm
        upper, fore = score[f"{side}_upper_arm"], score[f"{side}_forearm"]
        arm = np.minimum(upper, fore)
        inside = (arm < 1.0) & mask
        core, band = inside & (arm < 0.4), inside & (arm >= 0.4)
        near_torso = torso_pixels & (arm < 2.0)
        if core.sum() > 4 and near_torso.sum() > 4:
            c_arm, c_torso = np.median(lab[core], axis=0), np.median(lab[near_torso], axis=0)
            to_torso, to_arm = _distance(lab, c_torso), _distance(lab, c_arm)
            closer = to_torso < to_arm
            closer = cv2.medianBlur(closer.astype(np.uint8), 3).astype(bool)
            inside &= ~(band & closer & (np.linalg.norm(c_arm - c_torso) > 10.0))
            if c_bg is not None:  # the mask often swallows the thin gap between an arm and the body
                d_bg = _distance(lab, c_bg)
                like_bg = (d_bg < to_arm) & (d_bg < to_torso)
                like_bg = cv2.medianBlur(like_bg.astype(np.uint8), 3).astype(bool) & band
                gap |= like_bg & (np.linalg.norm(c_arm - c_bg) > 10.0)
                inside &= ~gap
        labels[inside] = LAYER_NAMES.index(f"{side}_upper_arm")
        labels[inside & (fore <= upper)] = LAYER_NAMES.index(f"{side}_forearm")
    labels[~mask | gap] = -1
    return labels


def _softmin(dist: dict[str, np.ndarray], tau: np.ndarray | float) -> dict[str, np.ndarray]:
    """Soft-min weights over bones from their distances (pixels); ``tau`` is the blend width (pixels)."""
    stack = np.stack(list(dist.values()), axis=-1)
    w = np.exp(-(stack - stack.min(axis=-1, keepdims=True)) / np.asarray(tau)[..., None])
    w /= w.sum(axis=-1, keepdims=True)
    return {name: w[..., i] for i, name in enumerate(dist)}


def _joint_share(q: np.ndarray, body: _Body, joint: str, segment: str) -> np.ndarray:
    """How much a point near a limb's root joint still follows the body (1) rather than the limb (0):
    a ramp along the limb's first segment, over +-0.1 torso lengths around the joint."""
    a, b = body.segments[segment]
    u = (b - a) / (np.linalg.norm(b - a) + 1e-9)
    along = (q - body.ext[JOINT[joint]]) @ u
    return np.clip(0.5 - along / (0.2 * body.torso), 0.0, 1.0)


def _skin_weights(q: np.ndarray, body: _Body, layer: str) -> np.ndarray:
    """(..., B) skinning weights of source points q for one layer (zeros for bones it may not use).

    Limbs: a soft-min over their own two segments, handed over to the chest (shoulder) or pelvis (hip) by
    a ramp around the root joint. Head: chest and head. Torso: a soft-min over torso, head and (for
    garments, with a blend that widens below the pelvis) thighs and shins; never the arms, so a dress
    does not follow an arm lying on it. Chest and pelvis share the torso's weight along the spine.
    """
    d = _group_distances(q, body)
    t_len = body.torso
    tau0 = 0.06 * t_len
    w = np.zeros(q.shape[:-1] + (len(SKIN_BONES),))
    if layer not in ("torso", "head"):  # an arm (upper arm or forearm layer) or a leg
        side, kind = layer.split("_")[0], "leg" if layer.endswith("_leg") else "arm"
        first, second, root, body_bone = (
            ("upper_arm", "forearm", "shoulder", "chest") if kind == "arm" else ("thigh", "shin", "hip", "pelvis")
        )
        limb = _softmin({f"{side}_{first}": d[f"{side}_{first}"], f"{side}_{second}": d[f"{side}_{second}"]}, tau0)
        share = _joint_share(q, body, f"{side}_{root}", f"{side}_{first}")
        for name, value in limb.items():
            w[..., BONE[name]] = (1 - share) * value
        w[..., BONE[body_bone]] = share
    elif layer == "head":
        for name, value in _softmin({"chest": d["torso"], "head": d["head"]}, tau0).items():
            w[..., BONE[name]] = value
    else:
        below = (body.ext[PELVIS] - q) @ body.up
        tau = tau0 + 0.22 * t_len * np.clip(below / (0.3 * t_len), 0.0, 1.0)  # garments blend smoothly
        dist = {"chest": d["torso"], "head": d["head"]}
        dist.update({n: d[n] for n in ("left_thigh", "right_thigh", "left_shin", "right_shin")})
        for name, value in _softmin(dist, tau).items():
            w[..., BONE[name]] = value
    # Split the torso's weight between chest and pelvis along the spine (the waist bends).
    along = np.clip(((q - body.ext[PELVIS]) @ body.up) / t_len, 0.0, 1.0)
    to_chest = np.clip((along - 0.25) / 0.5, 0.0, 1.0)
    torso_w = w[..., BONE["chest"]] + w[..., BONE["pelvis"]]
    if layer in ("torso", "head"):
        w[..., BONE["chest"]] = torso_w * to_chest
        w[..., BONE["pelvis"]] = torso_w * (1 - to_chest)
    return w.astype(np.float32)


def _joints_shared(body: _Body) -> dict[frozenset, tuple[np.ndarray, tuple[str, str, np.ndarray] | None]]:
    """Every pair of bones that share a joint: {pair: (the joint, its bend or None)}.

    A limb's elbow or knee has a bend: (parent bone, child bone, the direction of the line through the joint
    that divides its two sides: the bisector of the child's direction and the parent's reversed one, so that a
    limb already bent in the photo divides at its crook). The joints with the body (neck, waist, shoulders,
    hips) have none: the torso layer draws the shoulder caps and the neck, and an arm layer's skin there
    follows the chest, so keeping it rigid on one side would leave it behind."""
    e = body.ext

    def unit(v: np.ndarray) -> np.ndarray:
        return v / (np.linalg.norm(v) + 1e-9)

    table = {
        frozenset(("chest", "head")): (e[NECK], None),
        frozenset(("chest", "pelvis")): ((e[NECK] + e[PELVIS]) / 2, None),
    }
    for side in ("left", "right"):
        for body_bone, first, second, (root, mid, end) in (
            ("chest", "upper_arm", "forearm", ("shoulder", "elbow", "wrist")),
            ("pelvis", "thigh", "shin", ("hip", "knee", "ankle")),
        ):
            a, m, b = (e[JOINT[f"{side}_{n}"]] for n in (root, mid, end))
            upper, lower = f"{side}_{first}", f"{side}_{second}"
            table[frozenset((body_bone, upper))] = (a, None)
            table[frozenset((upper, lower))] = (m, (upper, lower, unit(unit(b - m) - unit(a - m))))
    return table


@dataclass
class _Hinges:
    """Per vertex: the joint its two heaviest bones share, and which side of that joint's bend it lies on."""

    pivots: np.ndarray  # (V, 2) the shared joint (NaN: none, linear blending; 0: a single bone)
    bones: np.ndarray  # (V, 2) int: (parent, child) bones of an elbow or knee; -1 elsewhere
    side: np.ndarray  # (V,) signed distance from its dividing line, in HINGE_RAMP torso lengths, clipped to +-1


def _hinges(weights: np.ndarray, vertices: np.ndarray, body: _Body) -> _Hinges:
    """The hinge of each vertex's two heaviest bones (see :func:`mesh.skin_vertices`)."""
    order = np.argsort(-weights, axis=1)
    n = len(weights)
    pivots, bones, side = np.full((n, 2), np.nan), np.full((n, 2), -1, np.int64), np.zeros(n)
    # One bone: any pivot gives that bone's own transform. Exactly one only: a vertex whose second weight is
    # small but not zero still turns by that fraction of the angle between its bones, and about a pivot at
    # the image origin that flings it many pixels away at a sharp bend.
    single = weights[np.arange(n), order[:, 1]] <= 0.0
    pivots[single] = 0.0
    for pair, (joint, bend) in _joints_shared(body).items():
        a, b = (BONE[name] for name in pair)
        hit = ~single & (((order[:, 0] == a) & (order[:, 1] == b)) | ((order[:, 0] == b) & (order[:, 1] == a)))
        pivots[hit] = joint
        if bend is not None:
            parent, child, (dx, dy) = bend
            bones[hit] = (BONE[parent], BONE[child])
            r = vertices[hit] - joint
            side[hit] = np.clip((dx * r[:, 1] - dy * r[:, 0]) / (HINGE_RAMP * body.torso), -1.0, 1.0)
    return _Hinges(pivots, bones, side)


def _grid_mesh(valid: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices at the low-res pixel centres where ``valid``, two triangles per fully valid cell."""
    h, w = valid.shape
    index = -np.ones((h, w), np.int64)
    ys, xs = np.nonzero(valid)
    index[ys, xs] = np.arange(len(ys))
    vertices = np.stack([(xs + 0.5) * scale - 0.5, (ys + 0.5) * scale - 0.5], axis=1).astype(np.float64)
    v00, v01, v10, v11 = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    cell = (v00 >= 0) & (v01 >= 0) & (v10 >= 0) & (v11 >= 0)
    a, b, c, d = v00[cell], v01[cell], v10[cell], v11[cell]
    triangles = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)]).astype(np.int32)
    return vertices, triangles


def _downsample(image: np.ndarray, scale: int, h: int) -> np.ndarray:
    pad = h * scale - image.shape[0]
    padded = cv2.copyMakeBorder(image.astype(np.float32), 0, pad, 0, pad, cv2.BORDER_REPLICATE)
    return cv2.resize(padded, (h, h), interpolation=cv2.INTER_AREA)


def _disk(r: float) -> np.ndarray:
    k = max(3, int(2 * round(r) + 1))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def _solid(region: np.ndarray, sure: np.ndarray, size: int) -> np.ndarray:
    """A layer's opaque pixels (float32 0/1): its region where the mask is sure, with the unsure pinholes inside
    (a segmentation mask wavers where an arm touches the dress) filled back in and its outline smoothed by a
    pixel or two. Seen in the photo's pose, those holes and ragged bits show the layer underneath; once the
    limb moves off the body, they show the background, and a joint's bend stretches them into specks."""
    hard = (region & sure).astype(np.uint8)
    r = max(1.0, 2.0 * size / 512)
    closed = cv2.morphologyEx(hard, cv2.MORPH_CLOSE, _disk(r)).astype(bool) & region
    outside = np.zeros((size + 2, size + 2), np.uint8)
    filled = closed.astype(np.uint8).copy()
    cv2.floodFill(filled, outside, (0, 0), 2)
    solid = ((filled != 2) & region).astype(np.float32)
    return ((cv2.GaussianBlur(solid, (0, 0), 1.5 * size / 512) > 0.5) & region).astype(np.float32)


def _hidden_extensions(core: dict[str, np.ndarray], person: np.ndarray, body, size: int):
    """Hidden extensions under the layers in front, so that seams never show the background: (each layer's
    region with its extension, the torso's reach under the neck and shoulder caps, the pixel centres)."""
    t_px = body.torso
    ext = {n: core[n].copy() for n in LAYER_NAMES}
    torso_u8 = core["torso"].astype(np.uint8)
    closed = cv2.morphologyEx(torso_u8, cv2.MORPH_CLOSE, _disk(0.35 * t_px)).astype(bool)
    # Reach under the head and the shoulder caps (kinematic seams) but not along the arms, which may
    # leave: what stays behind there must look like the torso, not like an arm-shaped strip.
    grown = cv2.dilate(torso_u8, _disk(0.12 * t_px)).astype(bool)
    ys, xs = np.mgrid[0:size, 0:size]
    q = np.stack([xs, ys], -1).astype(np.float64)
    seams = [body.ext[NECK]] + [body.ext[JOINT[f"{side}_shoulder"]] for side in ("left", "right")]
    near_seam = np.min([_distance(q, p) for p in seams], axis=0) < 0.25 * t_px
    seam_ext = grown & near_seam & person & ~core["torso"]
    ext["torso"] |= (closed & person) | seam_ext
    for side in ("left", "right"):  # upper arms reach under their forearms at the elbow
        elbow = body.ext[JOINT[f"{side}_elbow"]]
        near_elbow = _distance(q, elbow) < 1.5 * body.radius[f"{side}_upper_arm"]
        ext[f"{side}_upper_arm"] |= near_elbow & core[f"{side}_forearm"]
    for side in ("left", "right"):
        leg_zone = body.segments[f"{side}_thigh"]
        near_thigh = segment_distance(q, *leg_zone) < body.radius[f"{side}_thigh"]
        ext[f"{side}_leg"] |= near_thigh & core["torso"]
    return ext, seam_ext, q


def _layer_colours(name: str, person_rgb, torso_rgb, seam_ext: np.ndarray, torso_core: np.ndarray) -> np.ndarray:
    """A layer's colours. The torso layer shows the real shoulders and neck where it reaches under them and its
    own fill elsewhere; a leg shows the garment where it reaches up under it, as the photo does there (where the
    garment narrows, in a turn, or parts from a kicking leg, that reach is what shows: the dress moving with the
    leg, not a slab of the leg's colour)."""
    if name == "torso":
        return np.where(seam_ext[..., None], person_rgb, torso_rgb)
    if name.endswith("_leg"):
        return np.where(torso_core[..., None], torso_rgb, person_rgb)
    return person_rgb


def build_layers(source_rgb: np.ndarray, points: np.ndarray, mask: np.ndarray, grid: int = 128) -> SourceLayers:
    """Split the source person into skinned layers (see the module docstring). ``mask`` is (S, S) in [0, 1];
    the meshes and low-res maps live on a (grid, grid) lattice of pixel centres."""
    size = source_rgb.shape[0]
    scale = max(1, size // grid)
    h = -(-size // scale)
    soft = np.clip(mask.astype(np.float32), 0.0, 1.0)
    photo_mask = soft.copy()  # before the gaps between arm and body are given back to the background
    person = soft > 0.5
    body = _body(points, person)
    labels = _labels(body, size, person, source_rgb)
    gap = person & (labels < 0)  # background the mask took for person (between an arm and the body)
    person &= ~gap
    soft = np.where(gap, 0.0, soft).astype(np.float32)
    core = {name: labels == i for i, name in enumerate(LAYER_NAMES)}
    t_px = body.torso

    ext, seam_ext, q = _hidden_extensions(core, person, body, size)

    # Textures: colours extended past each region's edge so bilinear sampling never pulls in background.
    # Colours come from solidly-person pixels only (the mask's fringe mixes in the photo's background).
    seen = cv2.erode((soft > 0.9).astype(np.uint8), _disk(1)).astype(bool)
    person_rgb = fill_from(source_rgb, seen & ~core["torso"])
    torso_rgb = fill_from(source_rgb, seen & core["torso"])
    ankles = body.ext[[JOINT["left_ankle"], JOINT["right_ankle"]]]
    background, bg_known = clean_plate(source_rgb, photo_mask, t_px, ankles)

    vertex_valid_margin = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
    ys, xs = np.mgrid[0:h, 0:h]
    grid = np.stack([(xs + 0.5) * scale - 0.5, (ys + 0.5) * scale - 0.5], -1).astype(np.float64)
    layers = []
    for name in LAYER_NAMES:
        region = ext[name].astype(np.float32)
        # A hard edge (thresholded, then softened by a pixel): the mask's blurry fringe between an arm and
        # the body is background, and must neither linger when the arm leaves nor follow it as a ghost.
        alpha = cv2.GaussianBlur(_solid(region > 0, soft > 0.8, size), (0, 0), max(0.6, size / 512))
        if name.endswith("upper_arm"):  # the shoulder cap is drawn by the torso layer, not the turning arm
            share = _joint_share(q, body, f"{name.split('_')[0]}_shoulder", name)
            alpha *= np.clip((0.75 - share) / 0.25, 0.0, 1.0).astype(np.float32)
        rgb = _layer_colours(name, person_rgb, torso_rgb, seam_ext, core["torso"])
        texture = np.dstack([np.clip(rgb, 0, 255), alpha * 255]).round().astype(np.uint8)
        reliability = np.where(core[name], 1.0, HIDDEN_RELIABILITY).astype(np.float32)
        alpha_low = _downsample(alpha, scale, h)
        rel_low = _downsample(reliability * alpha, scale, h) / np.maximum(alpha_low, 1e-6)
        valid = cv2.dilate((alpha_low > 0.01).astype(np.uint8), vertex_valid_margin).astype(bool)
        weights_grid = _skin_weights(grid, body, name)  # (h, w, B)
        vertices, triangles = _grid_mesh(valid, scale)
        vw = weights_grid[valid]
        hinges = _hinges(vw, vertices, body)
        # Where a layer folds over itself, its more opaque triangles win (never its transparent margin),
        # then the ones further down the limb (a forearm over its upper arm).
        opacity = np.floor(alpha_low[valid][triangles].mean(axis=1) * 4)
        depth = 10 * opacity + 3 * (vw @ BONE_DEPTH)[triangles].mean(axis=1)
        layers.append(SourceLayer(
            name=name, texture=texture, alpha_low=alpha_low, reliability_low=np.clip(rel_low, 0, 1),
            weights_low=weights_grid, vertices=vertices,
            vertex_weights=vw, pivots=hinges.pivots, hinge_bones=hinges.bones, hinge_side=hinges.side,
            triangles=triangles,
            priority=np.round(depth).astype(np.int16),
        ))  # fmt: skip
    bg_rel = np.where(bg_known, 1.0, HIDDEN_RELIABILITY).astype(np.float32)
    return SourceLayers(
        size=size,
        scale=scale,
        grid=h,
        points=np.asarray(points, np.float32),
        layers=layers,
        background=np.clip(background, 0, 255).round().astype(np.uint8),
        background_reliability_low=_downsample(bg_rel, scale, h),
        labels=labels,
    )
