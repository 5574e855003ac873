"""The pose rig's confidence map M (paper Sec 3.3): low where the warped source is unreliable.

Per layer, on the low-res output grid, confidence is the product of
  * the texture's reliability at the sampled source point (1 where it was seen in the photo, low where it
    was filled in: what an arm hid on the dress, the background behind the person -> disocclusions),
  * a stretch term: the local area ratio of the backward map; magnified or folded (self-overlapping)
    regions get little confidence,
and layers are composited back to front with their alphas, with an extra penalty on soft seams where
two layers meet. Everything is in [0, 1].
"""

from __future__ import annotations

import numpy as np


def stretch_factor(grid_map: np.ndarray, scale: float, min_area: float = 0.5) -> np.ndarray:
    """1 where the map keeps or shrinks area, falling to 0 where the source is magnified below ``min_area``
    or the mapping folds over (negative Jacobian determinant). ``grid_map`` is in source pixels."""
    d_dy, d_dx = _gradient(grid_map, 0), _gradient(grid_map, 1)  # (h, w, 2) each: d(x, y)/dy and d(x, y)/dx
    det = (d_dx[..., 0] * d_dy[..., 1] - d_dy[..., 0] * d_dx[..., 1]) / float(
        scale * scale
    )  # source area per output area
    return np.clip(det / min_area, 0.0, 1.0).astype(np.float32)


def _gradient(values: np.ndarray, axis: int) -> np.ndarray:
    """``np.gradient`` along one axis (central differences inside, one-sided at the ends), all channels at once."""
    values = np.moveaxis(values, axis, 0)
    out = np.empty_like(values)
    if len(values) < 2:
        out[:] = 0
    else:
        out[1:-1] = (values[2:] - values[:-2]) * 0.5
        out[0], out[-1] = values[1] - values[0], values[-1] - values[-2]
    return np.moveaxis(out, 0, axis)


def seam_factor(alpha: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """Lower confidence where a layer's alpha is partial (its soft boundary)."""
    return (1.0 - strength * 4.0 * alpha * (1.0 - alpha)).astype(np.float32)


def composite(confidence: np.ndarray, layer_confidence: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Put one layer's confidence over the accumulated map ("over" compositing with the layer's alpha)."""
    return confidence * (1.0 - alpha) + layer_confidence * alpha * seam_factor(alpha)
