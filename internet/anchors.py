"""Stage I, part 1: the motion-anchor detector (Sec 3.3).

A U-Net on the frame at the motion resolution predicts K heatmaps; anchors are their soft-argmax and each
anchor gets a 2x2 Jacobian from heatmap-weighted regression (first-order motion model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from internet.config import AnchorConfig
from internet.geometry import Anchors, identity_grid
from internet.layers import UNet, downsample


class AnchorDetector(nn.Module):
    """Frame (B, 3, S, S) in [0, 1] -> ``Anchors`` with K points and Jacobians."""

    def __init__(self, config: AnchorConfig, motion_size: int, norm_kind: str = "group") -> None:
        super().__init__()
        self.config = config
        self.motion_size = motion_size
        k = config.num_anchors
        self.unet = UNet(3, config.block_expansion, config.num_blocks, config.max_features, norm_kind)
        self.heatmap = nn.Conv2d(self.unet.out_channels, k, kernel_size=7, padding=3)
        self.jacobian = None
        if config.estimate_jacobian:
            self.jacobian = nn.Conv2d(self.unet.out_channels, 4 * k, kernel_size=7, padding=3)
            # Start from identity Jacobians: zero weights, bias (1, 0, 0, 1).
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(k))

    def forward(self, frame: torch.Tensor) -> Anchors:
        """K^s_i / K^d_i and their Jacobians (the anchors of Eq 5)."""
        x = downsample(frame, self.motion_size)
        features = self.unet(x)
        logits = self.heatmap(features)
        b, k, h, w = logits.shape
        heat = F.softmax(logits.float().flatten(2) / self.config.temperature, dim=-1).view(b, k, h, w)
        grid = identity_grid(h, w, device=frame.device)
        points = torch.einsum("bkhw,hwc->bkc", heat, grid)
        if self.jacobian is None:
            jac = torch.eye(2, device=frame.device).expand(b, k, 2, 2).contiguous()
        else:
            raw = self.jacobian(features).float().view(b, k, 4, h, w)
            jac = (raw * heat[:, :, None]).sum(dim=(-1, -2)).view(b, k, 2, 2)
        return Anchors(points=points, jacobians=jac, heatmaps=heat)
