"""VGG-19 feature extractor for the perceptual (L_vgg) and style (Eq 8-9) losses, from a local weights file.

Nothing is downloaded: the weights come from a file in the common torchvision layout (``features.N.weight``
/ ``features.N.bias`` of ``torchvision.models.vgg19``, or the bare ``N.weight`` of ``vgg19().features``),
either ``.safetensors`` or a PyTorch file read with ``torch.load(weights_only=True)``. The classifier is
ignored. A randomly initialised VGG is never built: the constructor requires the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from internet.checkpoint import read_tensors
from internet.errors import CheckpointError

# torchvision vgg19 ``features`` indices of the 16 convolutions, with (in, out) channels.
CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
CONV_CHANNELS: tuple[tuple[int, int], ...] = (
    (3, 64), (64, 64),
    (64, 128), (128, 128),
    (128, 256), (256, 256), (256, 256), (256, 256),
    (256, 512), (512, 512), (512, 512), (512, 512),
    (512, 512), (512, 512), (512, 512), (512, 512),
)  # fmt: skip
# Layer names relu{block}_{conv} in order; a 2x2 max-pool precedes blocks 2-5.
LAYER_NAMES: tuple[str, ...] = tuple(
    f"relu{b}_{c}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for c in range(1, n + 1)
)
PERCEPTUAL_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # pix2pixHD
PERCEPTUAL_WEIGHTS: tuple[float, ...] = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)  # pix2pixHD VGGLoss
STYLE_LAYERS: tuple[str, ...] = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")  # GFLA / PATN practice


def read_vgg19_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a VGG-19 weights file into ``{"features.N.weight"/"bias": tensor}``, validating every shape."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"VGG-19 weights file {path} does not exist")
    if path.suffix == ".safetensors":
        raw = read_tensors(path)
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
            raise CheckpointError(
                f"cannot read VGG-19 weights {path} with weights_only=True ({exc})"
            ) from None
        if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
            raw = raw["state_dict"]
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path} does not hold a state dict")
    tensors: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        name = key.removeprefix("module.").removeprefix("vgg.")
        if name[:1].isdigit():
            name = "features." + name
        if name.startswith("features.") and isinstance(value, torch.Tensor):
            tensors[name] = value
    for i, (cin, cout) in zip(CONV_INDICES, CONV_CHANNELS):
        weight, bias = tensors.get(f"features.{i}.weight"), tensors.get(f"features.{i}.bias")
        if weight is None or bias is None:
            raise CheckpointError(f"{path} is not a VGG-19 state dict: features.{i}.weight/bias missing")
        if tuple(weight.shape) != (cout, cin, 3, 3) or tuple(bias.shape) != (cout,):
            raise CheckpointError(
                f"{path}: features.{i}.weight has shape {tuple(weight.shape)}, expected {(cout, cin, 3, 3)}"
                " (is this VGG-19?)"
            )
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            raise CheckpointError(f"{path}: features.{i} holds NaN or inf")
    return tensors


class VGG19Features(nn.Module):
    """Frozen VGG-19 convolutional trunk: image (B, 3, H, W) in [0, 1] -> the requested relu activations.

    ImageNet mean/std normalisation is done inside (registered as buffers).
    """

    def __init__(self, weights: dict[str, torch.Tensor], layers: tuple[str, ...]) -> None:
        super().__init__()
        unknown = sorted(set(layers) - set(LAYER_NAMES))
        if unknown:
            raise ValueError(f"unknown VGG-19 layers {unknown}; known: {LAYER_NAMES}")
        self.layers = tuple(layers)
        self.depth = max(LAYER_NAMES.index(n) for n in layers) + 1
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, 3, padding=1) for cin, cout in CONV_CHANNELS[: self.depth]
        )
        with torch.no_grad():
            for conv, i in zip(self.convs, CONV_INDICES):
                conv.weight.copy_(weights[f"features.{i}.weight"].float())
                conv.bias.copy_(weights[f"features.{i}.bias"].float())
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path, layers: tuple[str, ...]) -> VGG19Features:
        return cls(read_vgg19_weights(path), layers)

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # always frozen, always eval

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Activations of ``self.layers``, in that order."""
        x = (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)
        out: dict[str, torch.Tensor] = {}
        for idx, conv in enumerate(self.convs):
            name = LAYER_NAMES[idx]
            if name.endswith("_1") and idx > 0:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            x = F.relu(conv(x))
            if name in self.layers:
                out[name] = x
        return [out[name] for name in self.layers]
