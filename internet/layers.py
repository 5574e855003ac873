"""Small building blocks shared by the Stage I and Stage II networks.

Every block takes the normalisation by name (``ModelConfig.norm``). ``batch`` is FOMM's choice, which INTERNet
builds on: BatchNorm with affine parameters (SyncBatchNorm under DDP, ``training.distributed.wrap``), running
statistics at inference. ``group`` (GroupNorm with up to 8 groups) normalises each image on its own; on the
narrow layers of the reduced presets that is one or two maps per group, which removes each image's absolute
colour from the features (docs/reproduction.md measures what that costs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "group")


def norm(channels: int, kind: str = "group") -> nn.Module:
    """``batch``: BatchNorm2d (affine, running statistics); ``group``: GroupNorm with up to 8 groups that divide
    ``channels``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels, affine=True)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class ConvBlock(nn.Sequential):
    """conv -> norm -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, norm_kind: str = "group") -> None:
        conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        super().__init__(conv, norm(cout, norm_kind), nn.ReLU(True))


class ResBlock(nn.Module):
    """Pre-activation residual block (pix2pixHD / FOMM style) keeping the channel count."""

    def __init__(self, channels: int, norm_kind: str = "group") -> None:
        super().__init__()
        self.body = nn.Sequential(
            norm(channels, norm_kind),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            norm(channels, norm_kind),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DownBlock(nn.Sequential):
    """ConvBlock then 2x average pooling."""

    def __init__(self, cin: int, cout: int, norm_kind: str = "group") -> None:
        super().__init__(ConvBlock(cin, cout, norm_kind=norm_kind), nn.AvgPool2d(2))


class UpBlock(nn.Module):
    """2x nearest upsampling then ConvBlock."""

    def __init__(self, cin: int, cout: int, norm_kind: str = "group") -> None:
        super().__init__()
        self.conv = ConvBlock(cin, cout, norm_kind=norm_kind)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Hourglass / U-Net used by the anchor detector and the dense motion network (Sec 4.1: "a U-net").

    Input (B, cin, H, W) -> output (B, cin + block_expansion, H, W): the last decoder features concatenated
    with the input, as in FOMM's hourglass.
    """

    def __init__(
        self, cin: int, block_expansion: int, num_blocks: int, max_features: int, norm_kind: str = "group"
    ) -> None:
        super().__init__()
        chans = [cin] + [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]
        self.down = nn.ModuleList(DownBlock(chans[i], chans[i + 1], norm_kind) for i in range(num_blocks))
        ups = []
        for i in reversed(range(num_blocks)):
            cin_up = chans[i + 1] * (1 if i == num_blocks - 1 else 2)
            cout_up = chans[i] if i > 0 else block_expansion
            ups.append(UpBlock(cin_up, cout_up, norm_kind))
        self.up = nn.ModuleList(ups)
        self.out_channels = cin + block_expansion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


def downsample(image: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize of (B, C, H, W) to (size, size); identity when already that size."""
    if image.shape[-1] == size and image.shape[-2] == size:
        return image
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
