"""The training objective of INTERNet: Eq 1 = L_frame (Eq 7) + lambda_reg * L_reg (Eq 3 or Eq 4).

One function per term; the ``Objective`` class only runs the passes the terms need and sums them:

- ``lsgan_generator_loss`` / ``lsgan_discriminator_loss``: multiscale adversarial loss L_adv, **LSGAN**
  (least squares, as in pix2pixHD [36] and FOMM), averaged over the discriminator scales;
- ``feature_matching_loss``: L_fm, L1 between discriminator features of real and generated frames;
- ``PerceptualLoss``: L_vgg over VGG-19 features (pix2pixHD layers/weights) and the Gram style loss L_sty
  (Eq 8-9), from a local VGG-19 file; ``PixelPerceptualLoss`` is the weight-free substitute used without
  one (multi-scale L1 + (1 - MS-SSIM)); style is then off;
- ``equivariance_loss``: L_covar with a random TPS transform on anchors and Jacobians (Eq 10-11);
- ``temporal_loss``: the warping loss between O_t and O_{t-1} warped by the driving video's flow, masked by
  the flow's forward-backward validity (extrinsic, Eq 3) or, in addition, by the model's own confidence
  map M_t (intrinsic, Eq 4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim
from torch import nn

from internet.geometry import Anchors, ThinPlateSpline, flow_pixels_to_grid, invert_2x2, warp
from internet.model import INTERNetOutput
from training.config import LossConfig
from training.discriminator import DiscriminatorOutput
from training.vgg import (
    PERCEPTUAL_LAYERS,
    PERCEPTUAL_WEIGHTS,
    STYLE_LAYERS,
    VGG19Features,
    read_vgg19_weights,
)


def full_precision() -> contextlib.AbstractContextManager:
    """Loss arithmetic runs in float32 even inside a bf16/fp16 autocast region (matmuls, SSIM convs)."""
    stack = contextlib.ExitStack()
    for device_type in ("cpu", "cuda"):
        stack.enter_context(torch.autocast(device_type, enabled=False))
    return stack


# --------------------------------------------------------------------------- adversarial (L_adv, L_fm)


def lsgan_generator_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """L_adv for G (LSGAN): mean over scales of E[(1 - D(O))^2]."""
    return torch.stack([((1.0 - x.float()) ** 2).mean() for x in fake_logits]).mean()


def lsgan_discriminator_loss(
    real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_adv for D (LSGAN): (E[(1 - D(I))^2], E[D(O)^2]), each averaged over scales."""
    real = torch.stack([((1.0 - x.float()) ** 2).mean() for x in real_logits]).mean()
    fake = torch.stack([(x.float() ** 2).mean() for x in fake_logits]).mean()
    return real, fake


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L_fm (pix2pixHD): mean over scales and layers of |D_l(I) - D_l(O)|_1, real features detached."""
    terms = [
        (f.float() - r.detach().float()).abs().mean() for rs, fs in zip(real, fake) for r, f in zip(rs, fs)
    ]
    return torch.stack(terms).mean()


# --------------------------------------------------------------------------- perceptual, style (L_vgg, L_sty)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Eq 9: G(F)_ij = 1/(CHW) sum_hw F_ihw F_jhw, for features (B, C, H, W) -> (B, C, C)."""
    b, c, h, w = features.shape
    f = features.float().reshape(b, c, h * w)
    with full_precision():
        return f @ f.transpose(1, 2) / (c * h * w)


def style_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Eq 8: sum over layers of ||G(phi_l(I)) - G(phi_l(O))||_F^2, averaged over the batch.

    The 1/(CHW) factor of Eq 8 is the normalisation of the Gram matrix (Eq 9); it is applied once.
    """
    terms = [
        ((gram_matrix(r.detach()) - gram_matrix(f)) ** 2).sum(dim=(1, 2)).mean() for r, f in zip(real, fake)
    ]
    return torch.stack(terms).sum()


def perceptual_loss(
    real: list[torch.Tensor], fake: list[torch.Tensor], weights: tuple[float, ...]
) -> torch.Tensor:
    """L_vgg (pix2pixHD VGGLoss): sum_l w_l |phi_l(I) - phi_l(O)|_1 with the real features detached."""
    terms = [w * (f.float() - r.detach().float()).abs().mean() for w, r, f in zip(weights, real, fake)]
    return torch.stack(terms).sum()


@dataclass
class AppearanceTerms:
    """Unweighted perceptual and style terms for one batch."""

    perceptual: torch.Tensor
    style: torch.Tensor


class PerceptualLoss(nn.Module):
    """L_vgg and L_sty (Eq 8-9) on a frozen VGG-19 loaded from a local file."""

    uses_vgg = True

    def __init__(self, vgg: VGG19Features) -> None:
        super().__init__()
        if vgg.layers != PERCEPTUAL_LAYERS + STYLE_LAYERS:
            raise ValueError(
                "PerceptualLoss needs a VGG19Features built with PERCEPTUAL_LAYERS + STYLE_LAYERS"
            )
        self.vgg = vgg

    @classmethod
    def from_file(cls, path: str) -> PerceptualLoss:
        return cls(VGG19Features(read_vgg19_weights(path), PERCEPTUAL_LAYERS + STYLE_LAYERS))

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> AppearanceTerms:
        n = len(PERCEPTUAL_LAYERS)
        both = self.vgg(torch.cat([prediction, target.detach()], dim=0))
        fake = [f[: prediction.shape[0]] for f in both]
        real = [f[prediction.shape[0] :] for f in both]
        return AppearanceTerms(
            perceptual=perceptual_loss(real[:n], fake[:n], PERCEPTUAL_WEIGHTS),
            style=style_loss(real[n:], fake[n:]),
        )


class PixelPerceptualLoss(nn.Module):
    """Weight-free substitute for L_vgg when no VGG-19 file is given (the run log says so).

    sum over a 4-level average-pooled pyramid of |I_s - O_s|_1 / 4, plus (1 - MS-SSIM(I, O)). It rewards
    structure (MS-SSIM) and colour (L1) at several scales but has no learned features: textures are judged
    less sharply than with VGG. There is no Gram style term in this mode (it returns zero).
    """

    uses_vgg = False

    def __init__(self, levels: int = 4) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> AppearanceTerms:
        pred, real = prediction.float(), target.detach().float()
        l1 = pred.new_zeros(())
        p, r = pred, real
        for level in range(self.levels):
            if level:
                p, r = F.avg_pool2d(p, 2), F.avg_pool2d(r, 2)
            l1 = l1 + (p - r).abs().mean() / self.levels
        return AppearanceTerms(perceptual=l1 + (1.0 - ms_ssim_value(pred, real)), style=pred.new_zeros(()))


def ms_ssim_value(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Differentiable MS-SSIM (pytorch-msssim, 5 scales) with the window shrunk for frames under 161 px."""
    side = min(pred.shape[-2:])
    win = 11
    while win > 3 and (win - 1) * 16 >= side:
        win -= 2
    if (win - 1) * 16 >= side:
        raise ValueError(f"MS-SSIM needs frames of at least 33 px, got {side}")
    with full_precision():
        return ms_ssim(pred.clamp(0, 1), target.clamp(0, 1), data_range=1.0, size_average=True, win_size=win)


# --------------------------------------------------------------------------- equivariance (L_covar)


@dataclass
class EquivarianceTerms:
    """The two terms of Eq 11 (unweighted)."""

    value: torch.Tensor
    jacobian: torch.Tensor


def equivariance_loss(
    detect: Callable[[torch.Tensor], Anchors],
    frames: torch.Tensor,
    anchors: Anchors,
    transform: ThinPlateSpline,
) -> EquivarianceTerms:
    """L_covar, Eq 10-11 (first-order form of FOMM [27]), L1 norms averaged over anchors and batch.

    ``transform.warp_image`` resamples the frame at T(p), so anchors K' detected on the transformed frame
    satisfy T(K') = K for an equivariant detector (our T is the paper's T^-1): the value term is
    |K - T(K')| and the Jacobian term |I - J_K^-1 (dT(K') J_K')|. ``detect`` maps frames to ``Anchors``.
    """
    transformed = transform.warp_image(frames)
    moved = detect(transformed)
    with full_precision():
        value = (anchors.points.float() - transform.warp_coordinates(moved.points.float())).abs().mean()
        jac_moved = transform.jacobian(moved.points.float()) @ moved.jacobians.float()
        normed = invert_2x2(anchors.jacobians.float()) @ jac_moved
        eye = torch.eye(2, device=normed.device, dtype=normed.dtype)
        return EquivarianceTerms(value=value, jacobian=(eye - normed).abs().mean())


# --------------------------------------------------------------------------- temporal (L_reg)


def temporal_loss(
    current: torch.Tensor,
    previous: torch.Tensor,
    flow: torch.Tensor,
    valid: torch.Tensor,
    confidence: torch.Tensor | None = None,
) -> torch.Tensor:
    """Warping loss between adjacent outputs: Eq 3 (extrinsic) or, with ``confidence``, Eq 4 (intrinsic).

    L = 1/(HW) sum_x m(x) * |O_t(x) - O_{t-1}(x + f_t(x))|_1 (mean over RGB), where ``flow`` (B, H, W, 2) is
    the driving video's backward flow in pixels (D_t(x) ~ D_{t-1}(x + f_t(x))) and m = ``valid`` (B, 1, H, W),
    the forward-backward occlusion / in-frame mask (extrinsic), times the model's confidence map M_t
    (B, 1, H, W) in the intrinsic scheme. Gradients reach M_t; normalising by the pixel count (not by sum M)
    keeps the loss honest, and M also gates the deformable skips (Eq 6), so reconstruction stops M -> 0.
    """
    with full_precision():
        warped = warp(previous.float(), flow_pixels_to_grid(flow.float()))
    diff = (current.float() - warped).abs().mean(dim=1, keepdim=True)
    mask = valid.float()
    if confidence is not None:
        if confidence.shape[-2:] != current.shape[-2:]:
            raise ValueError(
                f"confidence map {tuple(confidence.shape)} does not match frames {tuple(current.shape)}"
            )
        mask = mask * confidence.float()
    return (diff * mask).mean()


# --------------------------------------------------------------------------- the sum (Eq 1, Eq 7)


class FrameBatch(Protocol):
    """What a training batch provides (``training.data.VideoSample`` after ``collate_samples``)."""

    source: torch.Tensor  # (B, 3, S, S) in [0, 1]
    driving: torch.Tensor  # (B, 3, S, S), the frame to reconstruct, D_t = I_t
    previous: torch.Tensor  # (B, 3, S, S), D_{t-1}
    flow: torch.Tensor  # (B, S, S, 2) backward flow in pixels: driving(x) ~ previous(x + flow(x))
    valid: torch.Tensor  # (B, 1, S, S) forward-backward consistent, in-frame pixels


@dataclass
class GeneratorLosses:
    """Unweighted terms and the weighted total of Eq 1 for one generator step."""

    total: torch.Tensor
    adversarial: torch.Tensor
    feature_matching: torch.Tensor
    perceptual: torch.Tensor
    style: torch.Tensor
    equivariance_value: torch.Tensor
    equivariance_jacobian: torch.Tensor
    temporal: torch.Tensor

    def scalars(self) -> list[tuple[str, float]]:
        """(name, value) pairs for logging (one device sync)."""
        names = [f.name for f in fields(self)]
        values = torch.stack([getattr(self, n).detach().float() for n in names]).tolist()
        return list(zip(names, values))


@dataclass
class DiscriminatorLosses:
    """LSGAN terms for one discriminator step; ``total`` = (real + fake) / 2 (pix2pixHD)."""

    total: torch.Tensor
    real: torch.Tensor
    fake: torch.Tensor

    def scalars(self) -> list[tuple[str, float]]:
        values = torch.stack([self.total.detach(), self.real.detach(), self.fake.detach()]).float().tolist()
        return list(zip(("total", "real", "fake"), values))


@dataclass
class GeneratorStep:
    """What a generator step produced: the losses, the outputs (for D and the image grids)."""

    losses: GeneratorLosses
    output: INTERNetOutput  # of the current frame
    previous_prediction: torch.Tensor | None


class Objective:
    """Runs the passes that the loss terms need and sums them with the configured weights (Eq 1, Eq 7).

    ``generator_step``: O_t = G(S, D_t) (through the possibly DDP-wrapped ``model``), O_{t-1} = G(S, D_{t-1})
    without gradients (the previous output is a fixed reference, like I_{t-1} in Eq 2-4; this also halves
    the cost of the second pass), the anchors of a TPS-warped D_t, and the discriminator on O_t and I_t.
    With ``temporal_reference: previous_frame`` the real I_{t-1} is the reference and no second pass runs.
    """

    def __init__(self, config: LossConfig, appearance: PerceptualLoss | PixelPerceptualLoss) -> None:
        self.config = config
        self.appearance = appearance

    @classmethod
    def build(cls, config: LossConfig, device: torch.device) -> Objective:
        """VGG-19 from ``config.vgg_weights`` when given, else the weight-free substitute."""
        appearance = (
            PerceptualLoss.from_file(config.vgg_weights) if config.vgg_weights else PixelPerceptualLoss()
        )
        return cls(config, appearance.to(device))

    def describe(self) -> list[str]:
        """Lines for the run log: which perceptual loss and temporal scheme are in use."""
        c = self.config
        if self.appearance.uses_vgg:
            lines = [
                f"perceptual loss: VGG-19 from {c.vgg_weights} (L_vgg x {c.perceptual}, L_sty x {c.style})"
            ]
        else:
            lines = [
                "perceptual loss: NO VGG-19 weights given (--vgg-weights), using the weight-free substitute "
                f"multi-scale L1 + (1 - MS-SSIM) x {c.perceptual}; the Gram style loss (Eq 8-9) is OFF"
            ]
        scheme = {"none": "none (a)", "extrinsic": "extrinsic, Eq 3 (b)", "intrinsic": "intrinsic, Eq 4 (c)"}
        reference = "O_t-1" if c.temporal_reference == "previous_output" else "I_t-1"
        lines.append(
            f"temporal regularisation: {scheme[c.temporal]} x {c.temporal_weight}, against warped {reference}"
        )
        lines.append(
            f"weights: adversarial (LSGAN) {c.adversarial}, feature matching {c.feature_matching}, "
            f"equivariance {c.equivariance_value} + {c.equivariance_jacobian}"
        )
        return lines

    def random_transform(
        self, batch: int, generator: torch.Generator, device: torch.device
    ) -> ThinPlateSpline:
        c = self.config
        return ThinPlateSpline(
            batch,
            sigma_affine=c.tps_sigma_affine,
            sigma_tps=c.tps_sigma_tps,
            points_tps=c.tps_points,
            generator=generator,
            device=device,
        )

    def generator_step(
        self,
        model: nn.Module,
        detector: Callable[[torch.Tensor], Anchors],
        discriminator: nn.Module,
        batch: FrameBatch,
        generator: torch.Generator,
        background_detector: Callable[[torch.Tensor], Anchors] | None = None,
    ) -> GeneratorStep:
        """All generator terms for a ``VideoSample`` batch. ``discriminator`` should be frozen by the caller.

        ``model`` is the (possibly DDP-wrapped) INTERNet; ``detector`` its ``detect`` (called directly so
        the extra anchors pass is part of the same backward); ``generator`` seeds the random TPS.
        ``background_detector``: the affine background term's anchor detector, if the model has one; it gets
        the same L_covar (a random TPS includes a global affine map, which is what a camera does).
        """
        c = self.config
        source, driving = batch.source, batch.driving
        previous = None
        if c.temporal != "none" and c.temporal_reference == "previous_frame":
            previous = batch.previous  # Eq 2-4 literally: I_{t-1}
        elif c.temporal != "none":
            with torch.no_grad():
                previous = model(source, batch.previous).prediction.detach()
        out = model(source, driving)
        zero = out.prediction.new_zeros((), dtype=torch.float32)

        n = driving.shape[0]
        d_out: DiscriminatorOutput = discriminator(torch.cat([out.prediction, driving], dim=0))
        fake_logits = [x[:n] for x in d_out.logits]
        fake_feats = [[f[:n] for f in fs] for fs in d_out.features]
        real_feats = [[f[n:] for f in fs] for fs in d_out.features]
        adversarial = lsgan_generator_loss(fake_logits)
        fm = feature_matching_loss(real_feats, fake_feats) if c.feature_matching else zero
        appearance = self.appearance(out.prediction, driving)

        if c.equivariance_value or c.equivariance_jacobian:
            transform = self.random_transform(n, generator, driving.device)
            anchors = Anchors(out.anchors_driving, out.jacobians_driving)
            eq = equivariance_loss(detector, driving, anchors, transform)
            if background_detector is not None:
                bg = equivariance_loss(background_detector, driving, background_detector(driving), transform)
                eq = EquivarianceTerms(eq.value + bg.value, eq.jacobian + bg.jacobian)
        else:
            eq = EquivarianceTerms(zero, zero)

        temporal = zero
        if previous is not None:
            confidence = out.confidences[-1] if c.temporal == "intrinsic" else None
            temporal = temporal_loss(out.prediction, previous, batch.flow, batch.valid, confidence)

        style = appearance.style if self.appearance.uses_vgg else zero
        total = (
            c.adversarial * adversarial
            + c.feature_matching * fm
            + c.perceptual * appearance.perceptual
            + c.style * style
            + c.equivariance_value * eq.value
            + c.equivariance_jacobian * eq.jacobian
            + c.temporal_weight * temporal
        )
        losses = GeneratorLosses(
            total=total,
            adversarial=adversarial,
            feature_matching=fm,
            perceptual=appearance.perceptual,
            style=style,
            equivariance_value=eq.value,
            equivariance_jacobian=eq.jacobian,
            temporal=temporal,
        )
        return GeneratorStep(losses=losses, output=out, previous_prediction=previous)

    def discriminator_step(
        self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor
    ) -> DiscriminatorLosses:
        """LSGAN discriminator loss on real frames and detached generated frames (one pass, concatenated)."""
        n = real.shape[0]
        out: DiscriminatorOutput = discriminator(torch.cat([real, fake.detach()], dim=0))
        real_loss, fake_loss = lsgan_discriminator_loss(
            [x[:n] for x in out.logits], [x[n:] for x in out.logits]
        )
        return DiscriminatorLosses(total=0.5 * (real_loss + fake_loss), real=real_loss, fake=fake_loss)
