"""Stage I, part 2: dense motion (Eq 5) and the intrinsic confidence map (Sec 3.2, Fig 6).

From the source frame and the two anchor sets, a U-Net predicts K+1 soft composition weights omega_i
(index 0 = background/identity), giving the base flow F^0 = sum_i omega_i T_i at the motion resolution, and,
from an additional output layer on the same features, the confidence map M^0 in [0, 1]. The pyramids
{F^i}, {M^i} are obtained by 2x bilinear upsampling. With ``MotionConfig.downscale`` 2 or 1 the network runs at
1/2 of the output or at its size instead of 1/4, and its F^0, M^0 are resampled to the same three sizes (1/4, 1/2,
1): coarser levels are downsampled from F^0, finer ones upsampled in 2x steps.

The background term T_0 is the identity in the paper (as in FOMM). ``MotionConfig.background = "affine"``
replaces it with a global affine map that ``BackgroundMotion`` predicts from the source and driving frames
(as TPSMM's background motion, here from an anchor of the background), for clips whose camera pans or zooms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from internet.anchors import AnchorDetector
from internet.config import AnchorConfig, MotionConfig
from internet.geometry import (
    Anchors,
    compose_flow,
    gaussian_heatmaps,
    invert_2x2,
    local_affine_grids,
    resize_grid,
    warp,
)
from internet.layers import UNet, downsample


@dataclass
class MotionOutput:
    """Stage I outputs; lists are coarse to fine (motion size, x2, x4)."""

    weights: torch.Tensor  # (B, K+1, h, w) soft weights omega, sum to 1 per pixel
    flows: list[torch.Tensor]  # [(B, H_i, W_i, 2)] sampling grids F^i
    confidences: list[torch.Tensor]  # [(B, 1, H_i, W_i)] confidence maps M^i in [0, 1]
    background: torch.Tensor | None = None  # (B, 2, 3) affine T_0 when predicted, None = identity


class BackgroundMotion(nn.Module):
    """(source, driving) -> the affine background term T_0 (B, 2, 3) of normalised coordinates.

    The background gets an anchor of its own: a one-anchor detector (the anchor detector's network with K = 1)
    finds a point and a Jacobian in each frame, and T_0(z) = c_s + J_s J_d^{-1} (z - c_d), the local transform
    of Eq 5, applied to the whole frame. Each frame is seen on its own, so a driving frame equal to the source
    gives exactly the identity, and a camera that pans or zooms moves the anchor with the scene. Its heatmap
    layer starts at zero (a uniform heatmap: the same centre in every frame) and its Jacobians at the identity,
    so a new module starts as the paper's identity term (a model warm-started from one without it renders
    exactly as before) and still gets gradients.
    """

    def __init__(self, config: AnchorConfig, motion_size: int, norm_kind: str = "group") -> None:
        super().__init__()
        self.detector = AnchorDetector(dataclasses.replace(config, num_anchors=1), motion_size, norm_kind)
        nn.init.zeros_(self.detector.heatmap.weight)
        nn.init.zeros_(self.detector.heatmap.bias)

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        a_s, a_d = self.detector(source), self.detector(driving)
        jac = (a_s.jacobians @ invert_2x2(a_d.jacobians))[:, 0]  # (B, 2, 2), the source broadcast if batch 1
        shift = a_s.points[:, 0] - (jac @ a_d.points[:, 0, :, None])[..., 0]
        return torch.cat([jac, shift[..., None]], dim=-1)


class DenseMotion(nn.Module):
    """(source, anchors) -> ``MotionOutput`` with the flow/confidence pyramid at ``sizes``."""

    def __init__(
        self,
        config: MotionConfig,
        num_anchors: int,
        motion_size: int,
        sizes: tuple[int, ...],
        norm_kind: str = "group",
    ) -> None:
        """``sizes``: the pyramid's sizes, coarse to fine, one of them ``motion_size`` (the network's own)."""
        super().__init__()
        if motion_size not in sizes or list(sizes) != sorted(sizes):
            raise ValueError(f"pyramid sizes {sizes} must be ascending and include the motion size {motion_size}")
        self.config = config
        self.motion_size = motion_size
        self.sizes = tuple(sizes)
        k1 = num_anchors + 1
        # Input: the source warped by each T_i (3 channels each) and the heatmap differences (1 each).
        self.unet = UNet(k1 * 4, config.block_expansion, config.num_blocks, config.max_features, norm_kind)
        self.weights = nn.Conv2d(self.unet.out_channels, k1, kernel_size=7, padding=3)
        self.confidence = nn.Conv2d(self.unet.out_channels, 1, kernel_size=7, padding=3)

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two output layers on the U-Net's features: logits of omega (K+1 channels) and of M^0 (1)."""
        return self.weights(features), self.confidence(features)

    def forward(
        self,
        source: torch.Tensor,
        anchors_source: Anchors,
        anchors_driving: Anchors,
        background: torch.Tensor | None = None,
    ) -> MotionOutput:
        """Eq 5: F^0 = sum_i omega_i T_i with sum_i omega_i = 1, and M^0 = sigmoid(conv(features)).

        ``background`` (B, 2, 3) replaces the identity T_0 (``BackgroundMotion``); None keeps the identity.
        """
        s = self.motion_size
        src = downsample(source, s)
        b = src.shape[0]
        transforms = local_affine_grids(anchors_source, anchors_driving, s, s, background)  # (B, K+1, s, s, 2)
        k1 = transforms.shape[1]
        warped = warp(
            src.unsqueeze(1).expand(-1, k1, -1, -1, -1).reshape(b * k1, 3, s, s),
            transforms.reshape(b * k1, s, s, 2),
        ).view(b, k1 * 3, s, s)
        var = self.config.heatmap_variance
        heat = gaussian_heatmaps(anchors_driving.points, s, s, var) - gaussian_heatmaps(
            anchors_source.points, s, s, var
        )
        heat = torch.cat([torch.zeros_like(heat[:, :1]), heat], dim=1)
        inputs = torch.cat([warped, heat.to(warped.dtype)], dim=1)
        if source.is_contiguous(memory_format=torch.channels_last):  # the fast path: one copy here saves the U-Net
            inputs = inputs.contiguous(memory_format=torch.channels_last)  # and both heads a layout copy each
        weight_logits, confidence_logits = self.heads(self.unet(inputs))
        weights = F.softmax(weight_logits.float(), dim=1)
        confidence = torch.sigmoid(confidence_logits.float())
        flow = compose_flow(weights, transforms.float())
        flows, confidences = [], []
        for size in self.sizes:  # coarse to fine: finer levels upsample the previous one (2x steps, the paper's)
            flow_from, confidence_from = (flows[-1], confidences[-1]) if flows and size > s else (flow, confidence)
            flows.append(flow_from if size == s else resize_grid(flow_from, size, size))
            confidences.append(confidence_from if size == s else _resize_map(confidence_from, size))
        return MotionOutput(weights=weights, flows=flows, confidences=confidences, background=background)


def _resize_map(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize (align_corners=True) of a map (B, C, h, w): 2x upsampling for the paper's pyramid."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
