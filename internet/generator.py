"""Stage II: the three-stage residual generator with deformable skip connections (Sec 3.3, Fig 6).

The source is encoded at full, 1/2 and 1/4 resolution (phi_2, phi_1, phi_0). Decoding starts from the
deformed 1/4-resolution features (a residual bottleneck at 1/8), then each stage upsamples 2x and, in the
multi-scale ("MS") variant, concatenates the deformed skip M^i * F^i(phi_i) of that scale (Eq 6). The
"SS4x" ablation baseline deforms only the 1/4-resolution features and upsamples 4x without further skips.

``generator.blend_output`` (not in Eq 6; off in every preset, on in the default checkpoint and the ablation)
blends the generated frame with the confidence-masked warp of the source image: O = M^2 F^2(S) + (1 - M^2) G.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from internet.config import GeneratorConfig
from internet.geometry import warp
from internet.layers import ConvBlock, DownBlock, ResBlock, UpBlock


def deformable_skip(features: torch.Tensor, flow: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """Eq 6: phi_out = M^i * F^i(phi_in), a backward warp of the features masked by the confidence map.

    ``grid_sample`` always returns NCHW; for channels-last features (the fast path) the masking writes straight
    into a channels-last tensor, so the concatenation and convolution that follow need no layout copy
    (the same numbers; 70 ms/frame less at 512² on CPU, docs/performance.md)."""
    warped, mask = warp(features, flow), confidence.to(features.dtype)
    if features.is_contiguous(memory_format=torch.channels_last) and not warped.is_contiguous(
        memory_format=torch.channels_last
    ):
        return torch.mul(warped, mask, out=torch.empty_like(warped, memory_format=torch.channels_last))
    return warped * mask


@dataclass
class SourceFeatures:
    """Encoder features of the source, finest first: phi_2 (S), phi_1 (S/2), phi_0 (S/4)."""

    full: torch.Tensor
    half: torch.Tensor
    quarter: torch.Tensor


class Encoder(nn.Module):
    """Source image (B, 3, S, S) -> ``SourceFeatures``; computed once per video at inference."""

    def __init__(self, channels: tuple[int, int, int], norm_kind: str = "group") -> None:
        super().__init__()
        c_full, c_half, c_quarter = channels
        self.stem = ConvBlock(3, c_full, kernel=7, norm_kind=norm_kind)
        self.down_half = DownBlock(c_full, c_half, norm_kind)
        self.down_quarter = DownBlock(c_half, c_quarter, norm_kind)

    def forward(self, source: torch.Tensor) -> SourceFeatures:
        full = self.stem(source)
        half = self.down_half(full)
        return SourceFeatures(full=full, half=half, quarter=self.down_quarter(half))


class Fusion(nn.Module):
    """Upsampled decoder features (+ a deformed skip when given) -> conv + residual refinement."""

    def __init__(self, cin: int, cout: int, refine_blocks: int, norm_kind: str = "group") -> None:
        super().__init__()
        blocks = [ResBlock(cout, norm_kind) for _ in range(refine_blocks)]
        self.body = nn.Sequential(ConvBlock(cin, cout, norm_kind=norm_kind), *blocks)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(x if skip is None else torch.cat([x, skip], dim=1))


class Generator(nn.Module):
    """Decoder of Stage II: (source features, flow/confidence pyramids) -> frame in [0, 1]."""

    def __init__(self, config: GeneratorConfig, norm_kind: str = "group") -> None:
        super().__init__()
        self.config = config
        nk = norm_kind
        c_full, c_half, c_quarter = config.channels
        cb = config.bottleneck_channels
        multiscale = config.skip_mode == "multiscale"
        self.multiscale = multiscale
        self.encoder = Encoder(config.channels, norm_kind=nk)
        # Stage 1 (S/4): deformed phi_0 -> bottleneck at S/8 -> back to S/4, fused with the skip.
        self.bottleneck = nn.Sequential(
            DownBlock(c_quarter, cb, nk),
            *[ResBlock(cb, nk) for _ in range(config.num_bottleneck_blocks)],
            UpBlock(cb, c_quarter, nk),
        )
        self.stage1 = Fusion(2 * c_quarter, c_quarter, config.num_refine_blocks, nk)
        # Stage 2 (S/2) and stage 3 (S): upsample, fuse the deformed skip of that scale (MS only).
        self.up_half = UpBlock(c_quarter, c_half, nk)
        self.stage2 = Fusion(c_half * (2 if multiscale else 1), c_half, config.num_refine_blocks, nk)
        self.up_full = UpBlock(c_half, c_full, nk)
        self.stage3 = Fusion(c_full * (2 if multiscale else 1), c_full, config.num_refine_blocks, nk)
        self.to_rgb = nn.Conv2d(c_full, 3, kernel_size=7, padding=3)

    def decode(
        self,
        features: SourceFeatures,
        flows: list[torch.Tensor],
        confidences: list[torch.Tensor],
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Frame generation from pyramids ordered coarse to fine (S/4, S/2, S); ``source`` (the image) is
        needed by ``blend_output`` only."""
        skip0 = deformable_skip(features.quarter, flows[0], confidences[0])
        x = self.stage1(self.bottleneck(skip0), skip0)
        x = self.up_half(x)
        skip1 = deformable_skip(features.half, flows[1], confidences[1]) if self.multiscale else None
        x = self.up_full(self.stage2(x, skip1))
        skip2 = deformable_skip(features.full, flows[2], confidences[2]) if self.multiscale else None
        x = self.stage3(x, skip2)
        generated = torch.sigmoid(self.to_rgb(x).float())
        if self.config.blend_output:
            if source is None:
                raise ValueError("generator.blend_output needs the source image")
            return blend(generated, warp(source.float(), flows[-1].float()), confidences[-1].float())
        return generated


def blend(generated: torch.Tensor, warped_source: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """O = M * F(S) + (1 - M) * G: the warped source where the confidence map trusts the warp, the generated
    frame where it does not (TPSMM's occlusion-blended output; ``generator.blend_output``)."""
    if confidence.shape[-2:] != generated.shape[-2:]:
        raise ValueError(f"confidence {tuple(confidence.shape)} does not match the frame {tuple(generated.shape)}")
    return confidence * warped_source + (1.0 - confidence) * generated
