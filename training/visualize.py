"""Image grids for TensorBoard: source, driving, prediction, anchors drawn on frames, confidence maps M^i.

Pure tensor code (no OpenCV) so it runs wherever the training runs; output is (3, H, W) in [0, 1].
"""

from __future__ import annotations

import colorsys

import torch
import torch.nn.functional as F

from internet.geometry import normalized_to_pixels, warp
from internet.model import INTERNetOutput

COLUMNS = ("source + K^s", "driving + K^d", "prediction", "warped source F(S)", "M^0", "M^1", "M^2 (finest)")


def anchor_colors(k: int) -> torch.Tensor:
    """K distinct colours (K, 3) around the hue circle."""
    return torch.tensor([colorsys.hsv_to_rgb(i / k, 0.9, 1.0) for i in range(k)], dtype=torch.float32)


def draw_anchors(frames: torch.Tensor, points: torch.Tensor, radius: int | None = None) -> torch.Tensor:
    """Paint filled discs at anchors (B, K, 2) in [-1, 1] (x, y) on frames (B, 3, H, W); returns a copy."""
    b, _, h, w = frames.shape
    radius = radius if radius is not None else max(1, min(h, w) // 48)
    out = frames.detach().float().clone()
    pix = normalized_to_pixels(points.detach().float(), h, w)  # (B, K, 2)
    ys = torch.arange(h, device=frames.device, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, device=frames.device, dtype=torch.float32).view(1, 1, 1, w)
    dist2 = (xs - pix[..., 0, None, None]) ** 2 + (ys - pix[..., 1, None, None]) ** 2  # (B, K, H, W)
    colors = anchor_colors(points.shape[1]).to(frames.device)
    for k in range(points.shape[1]):
        disc = (dist2[:, k] <= radius**2).unsqueeze(1)  # (B, 1, H, W)
        ring = (dist2[:, k] <= (radius + 1) ** 2).unsqueeze(1) & ~disc
        out = torch.where(ring, torch.zeros_like(out), out)
        out = torch.where(disc, colors[k].view(1, 3, 1, 1), out)
    return out


def confidence_to_rgb(confidence: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, h, w) map in [0, 1] -> (B, 3, size, size) grey, nearest-resized so its pixels stay visible."""
    m = F.interpolate(confidence.detach().float().clamp(0, 1), size=(size, size), mode="nearest")
    return m.expand(-1, 3, -1, -1)


def training_grid(
    source: torch.Tensor, driving: torch.Tensor, output: INTERNetOutput, max_rows: int = 4
) -> torch.Tensor:
    """One row per sample with the ``COLUMNS`` panels; returns (3, rows * S, len(COLUMNS) * S)."""
    n = min(max_rows, source.shape[0])
    s = source.shape[-1]
    src, drv = source[:n].detach().float(), driving[:n].detach().float()
    panels = [
        draw_anchors(src, output.anchors_source[:n]),
        draw_anchors(drv, output.anchors_driving[:n]),
        output.prediction[:n].detach().float().clamp(0, 1),
        warp(src, output.flows[-1][:n].detach().float()).clamp(0, 1),
    ]
    panels += [confidence_to_rgb(m[:n], s) for m in output.confidences]
    rows = [torch.cat([p[i] for p in panels], dim=-1) for i in range(n)]  # each (3, S, P*S)
    return torch.cat(rows, dim=-2).cpu()
