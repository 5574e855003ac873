"""Each loss term of training/objective.py on hand-made inputs with known answers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from internet import INTERNet, load_config
from internet.errors import CheckpointError
from internet.geometry import Anchors, ThinPlateSpline, identity_grid
from training.config import LossConfig
from training.discriminator import MultiScaleDiscriminator
from training.objective import (
    Objective,
    PerceptualLoss,
    PixelPerceptualLoss,
    equivariance_loss,
    feature_matching_loss,
    gram_matrix,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    perceptual_loss,
    style_loss,
    temporal_loss,
)
from training.vgg import CONV_CHANNELS, CONV_INDICES, LAYER_NAMES, VGG19Features, read_vgg19_weights

# --------------------------------------------------------------------------- Gram / style (Eq 8-9)


def test_gram_matrix_of_a_known_tensor():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (B=1, C=2, H=1, W=2)
    # Eq 9 by hand: G_ij = sum_hw F_i F_j / (C H W) with CHW = 4.
    expected = torch.tensor([[[1 * 1 + 2 * 2, 1 * 3 + 2 * 4], [3 * 1 + 4 * 2, 3 * 3 + 4 * 4]]]) / 4.0
    assert torch.allclose(gram_matrix(f), expected)


def test_gram_matrix_matches_a_loop_on_random_features():
    torch.manual_seed(0)
    f = torch.randn(2, 3, 4, 5)
    g = gram_matrix(f)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                want = sum(float(f[b, i, h, w] * f[b, j, h, w]) for h in range(4) for w in range(5)) / 60
                assert abs(float(g[b, i, j]) - want) < 1e-5


def test_style_loss_is_zero_for_equal_features_and_the_frobenius_distance_otherwise():
    torch.manual_seed(0)
    real = [torch.rand(2, 3, 4, 4), torch.rand(2, 5, 2, 2)]
    assert float(style_loss(real, [r.clone() for r in real])) == 0.0
    fake = [real[0] * 2.0, real[1]]  # Gram scales by 4 on the first layer only
    g = gram_matrix(real[0])
    expected = ((4 * g - g) ** 2).sum(dim=(1, 2)).mean()
    assert torch.allclose(style_loss(real, fake), expected)


def test_style_loss_sends_gradients_to_the_generated_features_only():
    real = [torch.rand(1, 2, 3, 3, requires_grad=True)]
    fake = [torch.rand(1, 2, 3, 3, requires_grad=True)]
    style_loss(real, fake).backward()
    assert real[0].grad is None and fake[0].grad is not None and fake[0].grad.abs().sum() > 0


# --------------------------------------------------------------------------- adversarial, feature matching


def test_lsgan_losses_on_known_logits():
    ones, zeros = (
        [torch.ones(2, 1, 4, 4), torch.ones(2, 1, 2, 2)],
        [torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2)],
    )
    assert float(lsgan_generator_loss(ones)) == 0.0  # G fooled D perfectly
    assert float(lsgan_generator_loss(zeros)) == 1.0
    real, fake = lsgan_discriminator_loss(ones, zeros)
    assert float(real) == 0.0 and float(fake) == 0.0
    real, fake = lsgan_discriminator_loss([torch.full((1, 1, 2, 2), 0.5)], [torch.full((1, 1, 2, 2), 0.5)])
    assert float(real) == pytest.approx(0.25) and float(fake) == pytest.approx(0.25)


def test_feature_matching_is_the_mean_l1_over_layers_and_scales():
    real = [[torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 2, 2)], [torch.zeros(1, 2, 2, 2)]]
    fake = [[torch.full((1, 2, 4, 4), 0.3), torch.full((1, 3, 2, 2), -0.6)], [torch.full((1, 2, 2, 2), 0.9)]]
    assert float(feature_matching_loss(real, fake)) == pytest.approx((0.3 + 0.6 + 0.9) / 3)


def test_perceptual_loss_weights_each_layer():
    real = [torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1)]
    fake = [torch.ones(1, 1, 2, 2), torch.full((1, 1, 1, 1), 2.0)]
    assert float(perceptual_loss(real, fake, (0.5, 0.25))) == pytest.approx(0.5 * 1 + 0.25 * 2)


# --------------------------------------------------------------------------- temporal (Eq 3, Eq 4)


def _shifted_pair(dx: int, dy: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """previous = random texture; current(x) = previous(x + (dx, dy)); flow and in-frame mask known."""
    g = torch.Generator().manual_seed(3)
    previous = torch.rand(2, 3, size, size, generator=g)
    current = torch.zeros_like(previous)
    valid = torch.zeros(2, 1, size, size)
    ys, xs = slice(max(0, -dy), size - max(0, dy)), slice(max(0, -dx), size - max(0, dx))
    current[:, :, ys, xs] = previous[:, :, ys.start + dy : ys.stop + dy, xs.start + dx : xs.stop + dx]
    valid[:, :, ys, xs] = 1.0
    flow = torch.zeros(2, size, size, 2)
    flow[..., 0], flow[..., 1] = float(dx), float(dy)
    return current, previous, flow, valid


def test_temporal_loss_is_zero_when_the_output_is_the_warped_previous_output():
    current, previous, flow, valid = _shifted_pair(2, -1)
    assert float(temporal_loss(current, previous, flow, valid)) < 1e-6
    # A wrong flow direction (or a sign error in the warp) would not give zero.
    assert float(temporal_loss(current, previous, -flow, valid)) > 0.05


def test_temporal_loss_value_matches_an_independent_masked_l1():
    current, previous, flow, valid = _shifted_pair(1, 2)
    noisy = current + 0.1 * torch.randn_like(current)
    expected = ((noisy - current).abs().mean(dim=1, keepdim=True) * valid).sum() / valid.numel()
    assert torch.allclose(temporal_loss(noisy, previous, flow, valid), expected, atol=1e-6)


def test_intrinsic_loss_is_zero_where_the_confidence_is_zero_and_extrinsic_where_it_is_one():
    current, previous, flow, valid = _shifted_pair(1, 0)
    noisy = current.clone()
    noisy[:, :, :8] += 0.5  # errors only in the top half
    confidence = torch.ones(2, 1, 16, 16)
    confidence[:, :, :8] = 0.0
    assert float(temporal_loss(noisy, previous, flow, valid, confidence)) < 1e-6
    assert float(temporal_loss(noisy, previous, flow, valid)) > 0.1
    ones = torch.ones(2, 1, 16, 16)
    assert torch.allclose(
        temporal_loss(noisy, previous, flow, valid, ones), temporal_loss(noisy, previous, flow, valid)
    )


def test_intrinsic_loss_sends_gradients_into_the_confidence_map():
    current, previous, flow, valid = _shifted_pair(1, 1)
    confidence = torch.full((2, 1, 16, 16), 0.5, requires_grad=True)
    temporal_loss(current + 0.2, previous, flow, valid, confidence).backward()
    grad = confidence.grad
    assert grad is not None
    assert (grad[valid.bool()] > 0).all()  # lowering M lowers the loss where the error is
    assert (grad[~valid.bool()] == 0).all()  # pixels that left the frame are masked by ``valid``


# --------------------------------------------------------------------------- equivariance (Eq 10-11)


@dataclass
class AffineCoordinateDetector:
    """An exactly equivariant detector for frames whose pixels hold their own (x, y) coordinate.

    A transformed frame holds T(q) at pixel q. Fitting that map as A q + b (least squares, exact for an
    affine T) tells where each reference point p_k moved: K' = A^-1 (p_k - b), with Jacobian A^-1.
    """

    points: torch.Tensor  # (K, 2)

    def __call__(self, frames: torch.Tensor) -> Anchors:
        b, _, h, w = frames.shape
        q = identity_grid(h, w, dtype=torch.float64).reshape(-1, 2)
        design = torch.cat([q, torch.ones(len(q), 1, dtype=torch.float64)], dim=1)  # (N, 3)
        values = frames[:, :2].double().flatten(2).transpose(1, 2)  # (B, N, 2)
        coef = torch.linalg.lstsq(design.expand(b, -1, -1), values).solution  # (B, 3, 2)
        a, t = coef[:, :2].transpose(1, 2), coef[:, 2]  # value = a q + t
        a_inv = torch.linalg.inv(a)
        pts = torch.einsum("bij,bkj->bki", a_inv, self.points.double()[None] - t[:, None])
        jac = a_inv[:, None].expand(-1, len(self.points), -1, -1)
        return Anchors(pts.float(), jac.float().contiguous())


def _coordinate_frames(batch: int, size: int = 32) -> torch.Tensor:
    grid = identity_grid(size, size).permute(2, 0, 1)  # (2, H, W): x, y
    return torch.cat([grid, torch.zeros(1, size, size)], dim=0)[None].expand(batch, -1, -1, -1).contiguous()


def _affine_transform(batch: int) -> ThinPlateSpline:
    tps = ThinPlateSpline(batch, sigma_affine=0.0, sigma_tps=0.0)
    # A shrinking affine map (no sample leaves the frame, so padding never interferes).
    tps.theta = torch.tensor([[[0.8, 0.1, 0.05], [-0.05, 0.75, -0.08]], [[0.7, 0.0, 0.1], [0.05, 0.8, 0.0]]])
    return tps


def test_equivariance_loss_is_zero_for_an_exactly_equivariant_detector():
    points = torch.tensor([[0.1, -0.2], [0.5, 0.4], [-0.6, 0.3]])
    detector = AffineCoordinateDetector(points)
    frames = _coordinate_frames(2)
    anchors = detector(frames)
    assert torch.allclose(anchors.points, points.expand(2, -1, -1), atol=1e-5)  # identity frame: K = p
    terms = equivariance_loss(detector, frames, anchors, _affine_transform(2))
    assert float(terms.value.detach()) < 1e-5 and float(terms.jacobian.detach()) < 1e-5


def test_equivariance_loss_of_a_detector_that_ignores_the_image():
    points = torch.tensor([[0.1, -0.2], [0.5, 0.4]])

    def fixed(frames: torch.Tensor) -> Anchors:
        return Anchors(points.expand(frames.shape[0], -1, -1), torch.eye(2).expand(frames.shape[0], 2, 2, 2))

    transform = _affine_transform(2)
    frames = _coordinate_frames(2)
    terms = equivariance_loss(fixed, frames, fixed(frames), transform)
    # Independent answers: |p - T(p)| and |I - A| for the affine part A of T.
    a, t = transform.theta[:, :, :2], transform.theta[:, :, 2]
    moved = torch.einsum("bij,kj->bki", a, points) + t[:, None]
    assert float(terms.value.detach()) == pytest.approx(float((points - moved).abs().mean()), abs=1e-6)
    want_jac = (torch.eye(2) - a[:, None].expand(-1, 2, -1, -1)).abs().mean()
    assert float(terms.jacobian.detach()) == pytest.approx(float(want_jac), abs=1e-6)


# --------------------------------------------------------------------------- VGG-19 and its substitute


def _fake_vgg_state(prefix: str = "features.") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {}
    for i, (cin, cout) in zip(CONV_INDICES, CONV_CHANNELS):
        state[f"{prefix}{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        state[f"{prefix}{i}.bias"] = torch.randn(cout, generator=g) * 0.01
    state["classifier.0.weight"] = torch.zeros(4, 4)  # ignored
    return state


def test_vgg_weights_load_from_torchvision_layouts(tmp_path):
    from safetensors.torch import save_file

    state = _fake_vgg_state()
    torch.save(state, tmp_path / "vgg19.pth")  # a foreign file, as torchvision ships them
    save_file(state, str(tmp_path / "vgg19.safetensors"))
    torch.save(_fake_vgg_state(prefix=""), tmp_path / "features.pth")  # vgg19().features.state_dict()
    for name in ("vgg19.pth", "vgg19.safetensors", "features.pth"):
        loaded = read_vgg19_weights(tmp_path / name)
        assert torch.equal(loaded["features.34.weight"], state["features.34.weight"])
    vgg = VGG19Features(read_vgg19_weights(tmp_path / "vgg19.pth"), ("relu1_1", "relu2_1", "relu3_4"))
    x = torch.rand(1, 3, 16, 16)
    f11, f21, f34 = vgg(x)
    assert f11.shape == (1, 64, 16, 16) and f21.shape == (1, 128, 8, 8) and f34.shape == (1, 256, 4, 4)
    normalized = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    manual = F.relu(F.conv2d(normalized, state["features.0.weight"], state["features.0.bias"], padding=1))
    assert torch.allclose(f11, manual, atol=1e-5)
    assert not any(p.requires_grad for p in vgg.parameters())
    assert len(LAYER_NAMES) == 16


def test_vgg_loader_rejects_other_networks(tmp_path):
    state = _fake_vgg_state()
    del state["features.34.weight"]  # VGG-16 stops at features.28
    torch.save(state, tmp_path / "vgg16.pth")
    with pytest.raises(CheckpointError, match="features.34"):
        read_vgg19_weights(tmp_path / "vgg16.pth")
    bad = _fake_vgg_state()
    bad["features.2.weight"] = torch.zeros(64, 32, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="shape"):
        read_vgg19_weights(tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_vgg19_weights(tmp_path / "missing.pth")


def test_vgg_perceptual_loss_is_zero_for_identical_frames(tmp_path):
    torch.save(_fake_vgg_state(), tmp_path / "vgg19.pth")
    loss = PerceptualLoss.from_file(str(tmp_path / "vgg19.pth"))
    x = torch.rand(1, 3, 32, 32)
    same = loss(x, x.clone())
    assert float(same.perceptual) == 0.0 and float(same.style) == 0.0
    diff = loss(x, torch.rand(1, 3, 32, 32))
    assert float(diff.perceptual) > 0 and float(diff.style) > 0


def test_weight_free_substitute_is_zero_only_for_identical_frames():
    loss = PixelPerceptualLoss()
    x = torch.rand(2, 3, 64, 64)
    same = loss(x, x.clone())
    assert float(same.perceptual) == pytest.approx(0.0, abs=1e-5) and float(same.style) == 0.0
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1)
    assert float(loss(blurred, x).perceptual) > 0.05


def test_objective_without_vgg_weights_says_so_and_never_builds_a_vgg():
    objective = Objective.build(LossConfig(), torch.device("cpu"))
    assert isinstance(objective.appearance, PixelPerceptualLoss)
    assert "NO VGG-19 weights" in " ".join(objective.describe())
    assert not any(isinstance(m, VGG19Features) for m in objective.appearance.modules())


# --------------------------------------------------------------------------- generator step, tiny model


@dataclass
class _Batch:
    source: torch.Tensor
    driving: torch.Tensor
    previous: torch.Tensor
    flow: torch.Tensor
    valid: torch.Tensor


@pytest.mark.parametrize("temporal", ["none", "extrinsic", "intrinsic"])
def test_generator_step_gives_finite_terms_and_gradients(temporal):
    torch.manual_seed(0)
    model = INTERNet(load_config("tiny"))
    disc = MultiScaleDiscriminator(model.config.discriminator).requires_grad_(False)
    objective = Objective.build(LossConfig(temporal=temporal), torch.device("cpu"))
    b, s = 2, 64
    batch = _Batch(
        torch.rand(b, 3, s, s),
        torch.rand(b, 3, s, s),
        torch.rand(b, 3, s, s),
        torch.zeros(b, s, s, 2),
        torch.ones(b, 1, s, s),
    )
    step = objective.generator_step(model, model.detect, disc, batch, torch.Generator().manual_seed(0))
    values = dict(step.losses.scalars())
    assert all(torch.isfinite(torch.tensor(v)) for v in values.values())
    assert (values["temporal"] > 0) == (temporal != "none")
    assert values["equivariance_value"] > 0 and values["perceptual"] > 0
    step.losses.total.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.dense_motion.confidence.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())


def test_loss_terms_under_bf16_autocast_stay_close_to_float32():
    """The networks may run in bf16, but the loss arithmetic (SSIM, Gram, Jacobians) is kept in float32."""
    torch.manual_seed(0)
    model = INTERNet(load_config("tiny"))
    disc = MultiScaleDiscriminator(model.config.discriminator).requires_grad_(False)
    objective = Objective.build(LossConfig(temporal="intrinsic"), torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    b, s = 2, 64
    batch = _Batch(
        torch.rand(b, 3, s, s, generator=g),
        torch.rand(b, 3, s, s, generator=g),
        torch.rand(b, 3, s, s, generator=g),
        torch.zeros(b, s, s, 2),
        torch.ones(b, 1, s, s),
    )
    with torch.no_grad():
        full = dict(
            objective.generator_step(
                model, model.detect, disc, batch, torch.Generator().manual_seed(0)
            ).losses.scalars()
        )
        with torch.autocast("cpu", dtype=torch.bfloat16):
            step = objective.generator_step(model, model.detect, disc, batch, torch.Generator().manual_seed(0))
    half = dict(step.losses.scalars())
    for name in ("perceptual", "adversarial", "feature_matching", "total"):
        assert half[name] == pytest.approx(full[name], rel=0.05), name


def test_temporal_reference_previous_frame_compares_with_the_real_previous_frame():
    """Eq 2-4 read literally: the reference is the real I_{t-1}, and no second generator pass runs."""
    current, previous, flow, valid = _shifted_pair(1, 0, size=64)
    config = LossConfig(temporal="extrinsic", temporal_reference="previous_frame")
    objective = Objective.build(config, torch.device("cpu"))
    model = INTERNet(load_config("tiny"))
    disc = MultiScaleDiscriminator(model.config.discriminator).requires_grad_(False)
    batch = _Batch(previous, current, previous, flow, valid)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    step = objective.generator_step(model, model.detect, disc, batch, torch.Generator().manual_seed(0))
    assert len(calls) == 1  # no second generator pass
    assert step.previous_prediction is previous
    expected = temporal_loss(step.output.prediction, previous, flow, valid)
    assert torch.allclose(step.losses.temporal, expected)


def test_the_background_anchor_gets_the_equivariance_loss_too():
    torch.manual_seed(0)
    model = INTERNet(load_config("tiny", ["motion.background=affine"]))
    with torch.no_grad():  # a detector that depends on the image (a new one has a uniform heatmap)
        model.background.detector.heatmap.weight.normal_(0, 0.1)
    disc = MultiScaleDiscriminator(model.config.discriminator).requires_grad_(False)
    objective = Objective.build(LossConfig(temporal="none"), torch.device("cpu"))
    b, s = 2, 64
    batch = _Batch(torch.rand(b, 3, s, s), torch.rand(b, 3, s, s), torch.rand(b, 3, s, s),
                   torch.zeros(b, s, s, 2), torch.ones(b, 1, s, s))  # fmt: skip
    plain = objective.generator_step(model, model.detect, disc, batch, torch.Generator().manual_seed(0))
    both = objective.generator_step(model, model.detect, disc, batch, torch.Generator().manual_seed(0),
                                    background_detector=model.background.detector)  # fmt: skip
    assert both.losses.equivariance_value > plain.losses.equivariance_value
    (both.losses.equivariance_value + both.losses.equivariance_jacobian).backward()
    assert model.background.detector.heatmap.weight.grad.abs().sum() > 0
