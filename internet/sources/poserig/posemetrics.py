"""How well an animated person's limbs follow the driver: the limb-angle correlation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from internet.sources.landmarks import Landmarks
from internet.sources.poserig.retarget import LIMB_SEGMENTS

LIMBS: tuple[tuple[int, int], ...] = tuple(LIMB_SEGMENTS.values())  # upper arms, forearms, thighs, shins


def limb_angles(points: np.ndarray) -> np.ndarray:
    """(8,) image-plane angle (radians) of each limb segment, parent joint to child joint."""
    v = np.stack([points[b] - points[a] for a, b in LIMBS])
    return np.arctan2(v[:, 1], v[:, 0])


def _wrap(angle: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * angle))


def limb_angle_correlation(
    driver: Sequence[Landmarks | None], output: Sequence[Landmarks | None], min_visibility: float = 0.5
) -> float:
    """Pearson correlation between the driver's and the output's per-limb angle changes.

    For each sequence and each of the 8 limbs (upper arms, forearms, thighs, shins), the change of the
    limb's image-plane angle relative to the reference frame (the first frame where both sequences have a
    pose) is wrapped to (-pi, pi]. The changes of all limbs in all other frames where both sequences have a
    pose (and the limb's two joints have visibility >= ``min_visibility`` in both, there and in the
    reference) are pooled, and the Pearson correlation of driver changes vs output changes is returned.
    Angles are circular, so each output change is taken modulo 2 pi as the value nearest the driver's
    change (a limb turned by +179 degrees and one turned by -179 degrees agree, not disagree).
    1 means the output's limbs turn exactly like the driver's; a frozen output gives about 0; it is 0 when
    fewer than 3 pairs exist or either side does not move at all.
    """
    if len(driver) != len(output):
        raise ValueError(f"sequences differ in length: {len(driver)} vs {len(output)}")
    both = [i for i, (d, o) in enumerate(zip(driver, output)) if d is not None and o is not None]
    if len(both) < 2:
        return 0.0

    def seen(lm: Landmarks) -> np.ndarray:
        return np.array([min(lm.visibility[a], lm.visibility[b]) >= min_visibility for a, b in LIMBS])

    ref = both[0]
    d_ref, o_ref = limb_angles(driver[ref].points), limb_angles(output[ref].points)
    ref_ok = seen(driver[ref]) & seen(output[ref])
    xs, ys = [], []
    for i in both[1:]:
        ok = ref_ok & seen(driver[i]) & seen(output[i])
        x = _wrap(limb_angles(driver[i].points) - d_ref)
        y = limb_angles(output[i].points) - o_ref
        xs.append(x[ok])
        ys.append((x + _wrap(y - x))[ok])  # the output's change, taken mod 2 pi nearest the driver's
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(x) < 3 or x.std() < 1e-6 or y.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def centred_limb_angle_correlation(
    driver: Sequence[Landmarks | np.ndarray | None],
    output: Sequence[Landmarks | None],
    min_visibility: float = 0.5,
) -> float:
    """Pearson correlation of per-limb angles, each centred on its own median (the quality figure of
    docs/poserig.md).

    For each of the 8 limbs and each sequence, the image-plane angle over the frames where both sequences see
    the limb (both joints with visibility >= ``min_visibility``; exact joints, given as (13, 2) arrays, are
    always seen) is centred on its median (circularly: around the mean direction first), then all limbs'
    centred angles are pooled and correlated. A constant offset of a limb (a different rest pose) does not
    count; a limb that stops following (stuck, lagging, a wrong detection on a ghost limb) does. Each output
    value is taken modulo 2 pi nearest the driver's. 1: the limbs turn exactly like the driver's; 0 when
    fewer than 3 values remain or either side does not move."""
    if len(driver) != len(output):
        raise ValueError(f"sequences differ in length: {len(driver)} vs {len(output)}")

    def parts(mark) -> tuple[np.ndarray, np.ndarray] | None:
        if mark is None:
            return None
        if isinstance(mark, np.ndarray):
            return limb_angles(mark), np.ones(len(LIMBS), bool)
        seen = np.array([min(mark.visibility[a], mark.visibility[b]) >= min_visibility for a, b in LIMBS])
        return limb_angles(mark.points), seen

    xs, ys = [], []
    pairs = [(parts(d), parts(o)) for d, o in zip(driver, output)]
    for k in range(len(LIMBS)):
        d_ang, o_ang = [], []
        for d, o in pairs:
            if d is not None and o is not None and d[1][k] and o[1][k]:
                d_ang.append(d[0][k])
                o_ang.append(o[0][k])
        if len(d_ang) < 2:
            continue
        x, y = _centred(np.array(d_ang)), _centred(np.array(o_ang))
        xs.append(x)
        ys.append(x + _wrap(y - x))
    if not xs:
        return 0.0
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(x) < 3 or x.std() < 1e-6 or y.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _centred(angles: np.ndarray) -> np.ndarray:
    mean = np.angle(np.exp(1j * angles).mean())
    spread = _wrap(angles - mean)
    return _wrap(spread - np.median(spread))
