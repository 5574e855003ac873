"""Retargeting: give the source skeleton the driver's pose, then one affine per body bone.

Bone *directions* are retargeted, not landmark displacements: each bone of the source skeleton takes the
driving bone's direction (absolute mode) or the source direction rotated by the driver's change of angle
since the reference frame (relative mode). Source bone lengths are kept; foreshortening is the driving
bone's length ratio to the reference frame, clamped to [``min_ratio``, 1]. The root (pelvis) follows the
driver's translation since the reference frame, scaled by the torso-length ratio.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from internet.skeleton import JOINT, JOINT_NAMES
from internet.sources.landmarks import Landmarks

NECK, PELVIS = 13, 14  # extra points appended to the 13 joints: mid-shoulders and mid-hips

# (parent, child) in the extended point list, parents before children; the pelvis is the root.
TREE: tuple[tuple[int, int], ...] = (
    (PELVIS, NECK),
    (NECK, JOINT["nose"]),
    (NECK, JOINT["left_shoulder"]),
    (NECK, JOINT["right_shoulder"]),
    (JOINT["left_shoulder"], JOINT["left_elbow"]),
    (JOINT["left_elbow"], JOINT["left_wrist"]),
    (JOINT["right_shoulder"], JOINT["right_elbow"]),
    (JOINT["right_elbow"], JOINT["right_wrist"]),
    (PELVIS, JOINT["left_hip"]),
    (PELVIS, JOINT["right_hip"]),
    (JOINT["left_hip"], JOINT["left_knee"]),
    (JOINT["left_knee"], JOINT["left_ankle"]),
    (JOINT["right_hip"], JOINT["right_knee"]),
    (JOINT["right_knee"], JOINT["right_ankle"]),
)

# Skinning bones: each gets one affine transform source -> output.
SKIN_BONES: tuple[str, ...] = (
    "chest", "pelvis", "head",
    "left_upper_arm", "left_forearm", "right_upper_arm", "right_forearm",
    "left_thigh", "left_shin", "right_thigh", "right_shin",
)  # fmt: skip
BONE = {name: i for i, name in enumerate(SKIN_BONES)}
LIMB_SEGMENTS: dict[str, tuple[int, int]] = {
    "left_upper_arm": (JOINT["left_shoulder"], JOINT["left_elbow"]),
    "left_forearm": (JOINT["left_elbow"], JOINT["left_wrist"]),
    "right_upper_arm": (JOINT["right_shoulder"], JOINT["right_elbow"]),
    "right_forearm": (JOINT["right_elbow"], JOINT["right_wrist"]),
    "left_thigh": (JOINT["left_hip"], JOINT["left_knee"]),
    "left_shin": (JOINT["left_knee"], JOINT["left_ankle"]),
    "right_thigh": (JOINT["right_hip"], JOINT["right_knee"]),
    "right_shin": (JOINT["right_knee"], JOINT["right_ankle"]),
}

Mode = Literal["absolute", "relative", "auto"]
# "auto": relative motion, except that a bone whose direction in the reference differs from the photo's by more
# than AUTO_KEEP degrees has its offset faded out (absolute at AUTO_DROP and beyond): a small offset is the
# photo's own pose (arms a little away from the body), a large one a reference that is not in the photo's pose.
AUTO_KEEP, AUTO_DROP = 25.0, 50.0


def extend(points: np.ndarray) -> np.ndarray:
    """(13, 2) joints -> (15, 2) with the neck (mid-shoulders) and pelvis (mid-hips) appended."""
    p = np.asarray(points, np.float64)
    neck = (p[JOINT["left_shoulder"]] + p[JOINT["right_shoulder"]]) / 2
    pelvis = (p[JOINT["left_hip"]] + p[JOINT["right_hip"]]) / 2
    return np.concatenate([p, neck[None], pelvis[None]])


_OTHER_SIDE = {"left": "right", "right": "left"}
# JOINT_NAMES order with left and right exchanged.
MIRRORED = np.array([JOINT["_".join(_OTHER_SIDE.get(w, w) for w in n.split("_"))] for n in JOINT_NAMES])


def facing(points: np.ndarray) -> float:
    """How squarely the body faces the camera: the shoulders' and hips' mean width across the spine, signed, in
    torso lengths. Positive when the person's left is on the image's right (a frontal photo), negative from
    behind (landmarks name the body's own sides), near 0 in profile."""
    e = extend(points)
    t = max(torso_length(points), 1e-6)
    up = (e[NECK] - e[PELVIS]) / t
    across = (e[JOINT["left_shoulder"]] - e[JOINT["right_shoulder"]] + e[JOINT["left_hip"]] - e[JOINT["right_hip"]]) / 2
    return float(up[0] * across[1] - up[1] * across[0]) / t


def mirrored(landmarks: Landmarks) -> Landmarks:
    """The same points with their left and right names exchanged."""
    return Landmarks(landmarks.points[MIRRORED], landmarks.visibility[MIRRORED], landmarks.mask)


def torso_length(points: np.ndarray) -> float:
    """Neck-to-pelvis distance in pixels: the body's scale."""
    e = extend(points)
    return float(np.linalg.norm(e[NECK] - e[PELVIS]))


def _bones(ext: np.ndarray) -> np.ndarray:
    return np.stack([ext[c] - ext[p] for p, c in TREE])


def retarget(
    source: np.ndarray,
    driving: np.ndarray,
    reference: np.ndarray,
    mode: Mode = "absolute",
    min_ratio: float = 0.35,
) -> np.ndarray:
    """The source skeleton in the driving pose: (13, 2) pixels in the source image.

    ``source``, ``driving`` and ``reference`` are (13, 2) joints; ``reference`` is the driving frame that
    corresponds to the source photo (the first frame, or the best-matching one).
    """
    src, drv, ref = extend(source), extend(driving), extend(reference)
    b_src, b_drv, b_ref = _bones(src), _bones(drv), _bones(ref)
    l_src, l_drv, l_ref = (np.linalg.norm(b, axis=1) + 1e-6 for b in (b_src, b_drv, b_ref))
    scale = float(np.clip(np.median(l_drv / l_ref), 0.5, 2.0))  # the driver coming closer is not foreshortening
    ratio = np.clip(l_drv / l_ref / scale, min_ratio, 1.0)
    if mode == "absolute":
        direction = b_drv / l_drv[:, None]
    elif mode in ("relative", "auto"):
        a_drv, a_ref, a_src = (np.arctan2(b[:, 1], b[:, 0]) for b in (b_drv, b_ref, b_src))
        offset = np.angle(np.exp(1j * (a_src - a_ref)))  # the photo's bone relative to the reference's
        if mode == "auto":
            degrees = np.degrees(np.abs(offset))
            offset = offset * np.clip((AUTO_DROP - degrees) / (AUTO_DROP - AUTO_KEEP), 0.0, 1.0)
        ang = a_drv + offset
        direction = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    else:
        raise ValueError(f"unknown motion mode {mode!r}")
    out = np.zeros_like(src)
    out[PELVIS] = src[PELVIS] + (drv[PELVIS] - ref[PELVIS]) * (l_src[0] / l_ref[0])
    for k, (p, c) in enumerate(TREE):
        out[c] = out[p] + direction[k] * l_src[k] * ratio[k]
    return out[:13].astype(np.float32)


def _perp(u: np.ndarray) -> np.ndarray:
    return np.array([-u[1], u[0]])


def _affine_3pt(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 affine mapping three points exactly (least squares if they are nearly collinear)."""
    a = np.concatenate([src, np.ones((len(src), 1))], axis=1)
    m, *_ = np.linalg.lstsq(a, dst, rcond=1e-6)
    return m.T


def _limb_affine(a_s: np.ndarray, b_s: np.ndarray, a_o: np.ndarray, b_o: np.ndarray) -> np.ndarray:
    """Rotate the bone onto its new direction, stretch along it by the length ratio, keep its width."""
    v_s, v_o = b_s - a_s, b_o - a_o
    l_s, l_o = np.linalg.norm(v_s) + 1e-6, np.linalg.norm(v_o) + 1e-6
    u_s, u_o = v_s / l_s, v_o / l_o
    frame_s = np.stack([u_s, _perp(u_s)], axis=1)
    frame_o = np.stack([u_o * (l_o / l_s), _perp(u_o)], axis=1)
    lin = frame_o @ frame_s.T
    return np.concatenate([lin, (a_o - lin @ a_s)[:, None]], axis=1)


def bone_affines(source: np.ndarray, output: np.ndarray) -> np.ndarray:
    """(B, 2, 3) affines in pixels mapping source points to output points, one per SKIN_BONES entry."""
    s, o = extend(source), extend(output)
    ls, rs, lh, rh = JOINT["left_shoulder"], JOINT["right_shoulder"], JOINT["left_hip"], JOINT["right_hip"]
    aff = np.zeros((len(SKIN_BONES), 2, 3))
    aff[BONE["chest"]] = _affine_3pt(s[[ls, rs, PELVIS]], o[[ls, rs, PELVIS]])
    aff[BONE["pelvis"]] = _affine_3pt(s[[lh, rh, NECK]], o[[lh, rh, NECK]])
    nose = JOINT["nose"]
    turn = np.arctan2(*(o[nose] - o[NECK])[::-1]) - np.arctan2(*(s[nose] - s[NECK])[::-1])
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    aff[BONE["head"]] = np.concatenate([rot, (o[NECK] - rot @ s[NECK])[:, None]], axis=1)
    for name, (a, b) in LIMB_SEGMENTS.items():
        aff[BONE[name]] = _limb_affine(s[a], s[b], o[a], o[b])
    return aff


def normalised_pose(points: np.ndarray) -> np.ndarray:
    """Joints centred on the pelvis and divided by the torso length."""
    e = extend(points)
    return (e[:13] - e[PELVIS]) / max(torso_length(points), 1e-6)


def pose_distance(a: Landmarks, b: Landmarks) -> float:
    """Visibility-weighted mean joint distance between two poses after normalisation (pelvis at the origin,
    torso length 1). 0 for the same pose in any position/scale; about 0.3 between arms down and arms out."""
    w = np.minimum(a.visibility, b.visibility).astype(np.float64) + 1e-6
    d = np.linalg.norm(normalised_pose(a.points) - normalised_pose(b.points), axis=1)
    return float((w * d).sum() / w.sum())
