"""pix2pixHD-style multiscale patch discriminator returning intermediate features (for L_fm)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from internet.config import DiscriminatorConfig
from internet.layers import norm


@dataclass
class DiscriminatorOutput:
    """Per scale (finest first): the patch logits and the list of intermediate feature maps."""

    logits: list[torch.Tensor]
    features: list[list[torch.Tensor]]


class PatchDiscriminator(nn.Module):
    """A PatchGAN: strided 4x4 convolutions, GroupNorm, LeakyReLU; one logit per patch."""

    def __init__(self, block_expansion: int, max_features: int, num_layers: int) -> None:
        super().__init__()
        layers = []
        cin = 3
        for i in range(num_layers):
            cout = min(max_features, block_expansion * 2**i)
            stride = 2 if i < num_layers - 1 else 1
            layers.append(
                nn.Sequential(
                    nn.Conv2d(cin, cout, 4, stride=stride, padding=1),
                    norm(cout) if i > 0 else nn.Identity(),
                    nn.LeakyReLU(0.2, inplace=False),
                )
            )
            cin = cout
        self.layers = nn.ModuleList(layers)
        self.head = nn.Conv2d(cin, 1, 4, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return self.head(x), feats


class MultiScaleDiscriminator(nn.Module):
    """``num_scales`` PatchGANs on the image at full, 1/2, 1/4... resolution (pix2pixHD)."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            PatchDiscriminator(config.block_expansion, config.max_features, config.num_layers)
            for _ in range(config.num_scales)
        )

    def forward(self, image: torch.Tensor) -> DiscriminatorOutput:
        logits, features = [], []
        x = image
        for i, disc in enumerate(self.scales):
            if i > 0:
                x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            out, feats = disc(x)
            logits.append(out)
            features.append(feats)
        return DiscriminatorOutput(logits=logits, features=features)
