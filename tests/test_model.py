"""INTERNet model: shapes for every preset, Stage I invariants, deformable skips, checkpoints."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from internet import PRESETS, CheckpointError, ConfigError, INTERNet, load_config
from internet.config import parse_overrides
from internet.generator import deformable_skip
from internet.geometry import Anchors, identity_grid, resize_grid, upsample2x
from internet.layers import ConvBlock
from training.discriminator import MultiScaleDiscriminator

torch.set_num_threads(2)


def build(name: str, seed: int = 0) -> INTERNet:
    torch.manual_seed(seed)
    return INTERNet(load_config(name)).eval()


def frames(size: int, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=g), torch.rand(batch, 3, size, size, generator=g)


def check_output(out, cfg, batch: int) -> None:
    s, k = cfg.image_size, cfg.anchors.num_anchors
    m, d = s // 4, cfg.dense_motion_size
    assert out.prediction.shape == (batch, 3, s, s)
    assert out.anchors_source.shape == out.anchors_driving.shape == (batch, k, 2)
    assert out.jacobians_source.shape == out.jacobians_driving.shape == (batch, k, 2, 2)
    assert out.weights.shape == (batch, k + 1, d, d)
    assert [tuple(f.shape) for f in out.flows] == [(batch, m * 2**i, m * 2**i, 2) for i in range(3)]
    assert [tuple(c.shape) for c in out.confidences] == [(batch, 1, m * 2**i, m * 2**i) for i in range(3)]
    assert out.prediction.min() >= 0 and out.prediction.max() <= 1
    assert torch.allclose(out.weights.sum(1), torch.ones(batch, d, d), atol=1e-5)
    for c in out.confidences:
        assert c.min() >= 0 and c.max() <= 1
    assert out.anchors_source.abs().max() <= 1 + 1e-5


@pytest.mark.parametrize("name", [n for n in PRESETS if not n.endswith("512")])
def test_forward_shapes_every_small_preset(name):
    cfg = load_config(name)
    model = build(name)
    src, drv = frames(cfg.image_size, batch=2)
    with torch.no_grad():
        out = model(src, drv)
    check_output(out, cfg, 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["internet-512", "ss4x-512"])
def test_full_size_forward_pass_at_512(name):
    cfg = load_config(name)
    assert cfg.image_size == 512 and cfg.motion_size == 128 and cfg.anchors.num_anchors == 10
    model = build(name)
    src, drv = frames(512)
    with torch.inference_mode():
        out = model(src, drv)
    check_output(out, cfg, 1)
    assert torch.isfinite(out.prediction).all()


def perturbed_prediction_changes(model: INTERNet) -> bool:
    """Does adding 1 to the full- and half-resolution source features change the output?"""
    src, drv = frames(model.config.image_size)
    with torch.no_grad():
        state = model.prepare_source(src)
        a = model.animate(state, drv).prediction
        state.features.full = state.features.full + 1.0
        state.features.half = state.features.half + 1.0
        b = model.animate(state, drv).prediction
    return not torch.equal(a, b)


def test_ms_uses_fine_skips_and_ss4x_does_not():
    """MS fuses deformed phi_1/phi_2 (Eq 6 at 3 scales); SS4x only the 1/4-resolution skip."""
    assert perturbed_prediction_changes(build("tiny"))
    torch.manual_seed(0)
    assert not perturbed_prediction_changes(INTERNet(load_config("tiny", ["generator.skip_mode=ss4x"])).eval())


@pytest.mark.parametrize("downscale", [4, 2, 1])
def test_same_source_and_driving_anchors_give_identity_flow_in_the_model(downscale):
    """At the paper's 1/4 and with ``motion.downscale`` 2 or 1 (omega at 1/2 or at the output's size, F/M still at
    the skips' 1/4, 1/2, 1): equal anchors with identity Jacobians give the identity flow at every level."""
    cfg = load_config("tiny", [f"motion.downscale={downscale}"])
    assert (cfg.motion_size, cfg.dense_motion_size) == (16, 64 // downscale)
    torch.manual_seed(0)
    model = INTERNet(cfg).eval()
    src, drv = frames(64, batch=2)
    with torch.no_grad():
        check_output(model(src, drv), cfg, 2)
        state = model.prepare_source(src[:1])
        anchors = Anchors(state.anchors.points, torch.eye(2).expand(1, 10, 2, 2).contiguous())
        state.anchors = anchors
        out = model.animate(state, anchors_driving=anchors)
    for flow in out.flows:
        h = flow.shape[1]
        assert torch.allclose(flow[0], identity_grid(h, h), atol=1e-5)


def test_a_quarter_resolution_model_warm_starts_a_half_resolution_one_and_old_configs_stay_quarter(tmp_path):
    quarter = build("tiny")
    half = INTERNet(load_config("tiny", ["motion.downscale=2"]))
    half.load_state_dict(quarter.state_dict())  # same parameters: the U-Net is convolutional
    folder = quarter.save_pretrained(tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    del config["motion"]["downscale"]
    (folder / "config.json").write_text(json.dumps(config))
    assert INTERNet.from_pretrained(folder).config.dense_motion_size == 16
    for bad in ("3", "8", "0"):
        with pytest.raises(ConfigError, match="downscale"):
            load_config("tiny", [f"motion.downscale={bad}"])


@pytest.mark.parametrize("value", [0.0, 1.0, 0.5])
def test_constant_images_give_finite_outputs(value):
    model = build("tiny")
    img = torch.full((1, 3, 64, 64), value)
    with torch.no_grad():
        out = model(img, img)
    for t in [out.prediction, out.anchors_driving, out.jacobians_driving, out.weights, *out.flows, *out.confidences]:
        assert torch.isfinite(t).all()


def test_bfloat16_autocast_runs():
    model = build("tiny")
    src, drv = frames(64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(src, drv)
    assert torch.isfinite(out.prediction).all()
    assert out.prediction.shape == (1, 3, 64, 64)


def test_gradients_reach_every_stage_one_and_two_parameter_group():
    model = build("tiny").train()
    src, drv = frames(64)
    out = model(src, drv)
    (out.prediction.mean() + out.confidences[-1].mean()).backward()
    for part in [model.detector, model.dense_motion, model.generator]:
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), type(part).__name__


def test_deformable_skip_identity_and_zero_confidence():
    feats = torch.randn(2, 5, 12, 12)
    grid = identity_grid(12, 12).expand(2, -1, -1, -1)
    ones = torch.ones(2, 1, 12, 12)
    assert torch.allclose(deformable_skip(feats, grid, ones), feats, atol=1e-6)
    assert torch.equal(deformable_skip(feats, grid, torch.zeros_like(ones)), torch.zeros_like(feats))
    # A half-confidence map halves the features.
    assert torch.allclose(deformable_skip(feats, grid, ones * 0.5), feats * 0.5, atol=1e-6)


def test_discriminator_returns_logits_and_features_per_scale():
    cfg = load_config("tiny")
    disc = MultiScaleDiscriminator(cfg.discriminator)
    out = disc(torch.rand(2, 3, 64, 64))
    assert len(out.logits) == len(out.features) == cfg.discriminator.num_scales
    assert all(len(f) == cfg.discriminator.num_layers for f in out.features)
    assert out.logits[0].shape[-1] > out.logits[1].shape[-1]


def test_save_load_round_trip_is_bit_identical(tmp_path):
    model = build("tiny", seed=3)
    src, drv = frames(64, seed=5)
    with torch.no_grad():
        ref = model(src, drv).prediction
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = INTERNet.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        out = loaded(src, drv).prediction
    assert torch.equal(out, ref)


def test_loading_another_preset_fails_clearly(tmp_path):
    build("tiny").save_pretrained(tmp_path / "tiny")
    with pytest.raises(CheckpointError, match="tiny"):
        INTERNet.from_pretrained(tmp_path / "tiny", config="small-128")


def test_weights_of_another_shape_are_rejected(tmp_path):
    build("tiny").save_pretrained(tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    cfg["generator"]["channels"] = [8, 8, 16]
    (tmp_path / "a" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        INTERNet.from_pretrained(tmp_path / "a")


def test_pickle_disguised_as_checkpoint_is_rejected_without_unpickling(tmp_path):
    import pickle

    build("tiny").save_pretrained(tmp_path / "c")

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (tmp_path / "c" / "model.safetensors").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError, match="safetensors"):
        INTERNet.from_pretrained(tmp_path / "c")


def test_config_unknown_keys_and_bad_types_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_config("tiny", ["generator.colour=red"])
    with pytest.raises(ConfigError, match="integer"):
        load_config("tiny", ["image_size=big"])
    with pytest.raises(ConfigError, match="skip_mode"):
        load_config("tiny", ["generator.skip_mode=other"])
    path = tmp_path / "c.yaml"
    path.write_text("preset: tiny\nanchors:\n  num_anchors: 6\n")
    assert load_config(path).anchors.num_anchors == 6
    path.write_text("preset: tiny\nanchor: {}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("nope")


def test_parse_overrides_nests_and_types():
    assert parse_overrides(["a.b=1", "a.c=0.5", "d=[1, 2]", "e=x"]) == {"a": {"b": 1, "c": 0.5}, "d": [1, 2], "e": "x"}
    with pytest.raises(ConfigError):
        parse_overrides(["novalue"])


def test_frame_motion_exposes_the_confidence_pyramid():
    from internet.sources.frames import FrameMotion

    levels = tuple(np.full((4 * 2**i, 4 * 2**i), i / 2, np.float32) for i in range(3))
    m = FrameMotion(*(np.zeros(1),) * 6, confidence=levels[-1], confidence_levels=levels)
    assert m.num_levels == 3
    assert m.confidence_at(0).shape == (4, 4) and m.confidence_at(1)[0, 0] == 0.5
    assert m.confidence_at(9) is levels[-1]
    single = FrameMotion(*(np.zeros(1),) * 6, confidence=levels[0])
    assert single.num_levels == 1 and single.confidence_at(2) is levels[0]


def test_exponent_floats_without_a_dot_are_numbers():
    """YAML 1.1 reads 1e-4 as a string; a float field must still take it."""
    from internet.config import DiscriminatorConfig, from_dict

    @dataclasses.dataclass
    class Opt:
        lr: float = 1.0

    assert from_dict(Opt, parse_overrides(["lr=1e-4"])).lr == 1e-4
    assert from_dict(Opt, {"lr": "2E3"}).lr == 2000.0
    with pytest.raises(ConfigError, match="number"):
        from_dict(Opt, {"lr": "fast"})
    with pytest.raises(ConfigError, match="integer"):
        from_dict(DiscriminatorConfig, {"num_scales": "1e2"})


def test_norm_option_builds_batchnorm_or_groupnorm_in_every_stage():
    """ModelConfig.norm picks the normalisation of every Stage I / Stage II block (FOMM uses BatchNorm)."""
    for kind, cls, other in (("batch", nn.BatchNorm2d, nn.GroupNorm), ("group", nn.GroupNorm, nn.BatchNorm2d)):
        model = INTERNet(load_config("tiny", [f"norm={kind}"]))
        for part in (model.detector, model.dense_motion, model.generator):
            kinds = {type(m) for m in part.modules()}
            assert cls in kinds and other not in kinds


def test_batchnorm_statistics_keep_each_images_colour_where_groupnorm_removes_it():
    """The diagnosis of docs/reproduction.md in one check: per-image normalisation of a narrow layer maps two
    images, one dark and one four times as bright, to the same features; batch statistics (at inference: the
    running ones) keep them apart."""
    torch.manual_seed(0)
    dark = 0.05 + 0.2 * torch.rand(3, 32, 32)
    images = torch.stack([dark, 4 * dark])
    diffs = {}
    for kind in ("group", "batch"):
        torch.manual_seed(1)
        block = ConvBlock(3, 8, norm_kind=kind)
        block(images)  # one training-mode pass fills BatchNorm's running statistics
        out = block.eval()(images)
        diffs[kind] = float((out[0] - out[1]).abs().mean().detach())
    assert diffs["group"] < 0.01 < 0.1 < diffs["batch"]  # group: only its eps tells them apart


def test_checkpoint_written_before_the_norm_field_loads_as_groupnorm(tmp_path):
    model = INTERNet(load_config("tiny", ["norm=group"])).eval()
    folder = model.save_pretrained(tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    del config["norm"]
    (folder / "config.json").write_text(json.dumps(config))
    loaded = INTERNet.from_pretrained(folder)
    assert loaded.config.norm == "group"
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(loaded(x, x).prediction, model(x, x).prediction)


def test_blend_output_copies_the_warped_source_where_confident_and_generates_where_not():
    """generator.blend_output: O = M^2 F^2(S) + (1 - M^2) G. Same source and driving frame give the identity
    flow (Eq 5), so with M -> 1 the output is the source itself, and with M -> 0 the decoder's frame."""
    torch.manual_seed(0)
    model = INTERNet(load_config("tiny", ["generator.blend_output=true"])).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        model.dense_motion.confidence.weight.zero_()
        model.dense_motion.confidence.bias.fill_(30.0)  # M = sigmoid(30) = 1 - 1e-13
        trusted = model(x, x).prediction
        model.dense_motion.confidence.bias.fill_(-30.0)
        generated = model(x, x).prediction
    assert (trusted - x).abs().max() < 1e-4
    assert (generated - x).abs().mean() > 0.1  # an untrained decoder does not reproduce the source


def test_a_removed_field_with_its_off_value_still_loads_and_any_other_value_is_an_error():
    from internet.config import ModelConfig, from_dict, to_dict

    data = to_dict(load_config("tiny"))
    data["generator"]["skip_image"] = False  # written by an older version: it meant "off"
    assert to_dict(from_dict(ModelConfig, data)) == to_dict(load_config("tiny"))
    data["generator"]["skip_image"] = True
    with pytest.raises(ConfigError, match="skip_image is no longer supported"):
        from_dict(ModelConfig, data)


class FixedBackground(nn.Module):
    """A background term that returns one known affine map (to check the rest of the path against it)."""

    def __init__(self, theta: torch.Tensor) -> None:
        super().__init__()
        self.theta = theta

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(driving.shape[0], 2, 3)


def test_affine_background_starts_as_the_identity_and_a_known_camera_shift_moves_the_output():
    """motion.background=affine: a new BackgroundMotion renders exactly as the identity term; a known T_0 moves the
    background: with omega = background everywhere and M -> 1, a blended output is the source shifted by T_0."""
    torch.manual_seed(0)
    plain = INTERNet(load_config("tiny", ["generator.blend_output=true"])).eval()
    model = INTERNet(load_config("tiny", ["generator.blend_output=true", "motion.background=affine"])).eval()
    missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("background.") for k in missing)
    src, drv = frames(64)
    with torch.no_grad():
        out = model(src, drv)
        assert torch.equal(out.prediction, plain(src, drv).prediction)
        assert torch.allclose(out.background, torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]))
        model.background = FixedBackground(torch.tensor([[[1.0, 0, 16 / 63], [0, 1.0, 0]]]))  # x -> x + 8 px
        model.dense_motion.weights.weight.zero_()
        model.dense_motion.weights.bias.copy_(torch.tensor([30.0] + [0.0] * 10))  # omega_0 = 1
        model.dense_motion.confidence.weight.zero_()
        model.dense_motion.confidence.bias.fill_(30.0)
        shifted = model(src, drv).prediction
        given = model.animate(model.prepare_source(src), drv, anchors_driving=model.detect(drv))
    # O(x) = S(x + 8 px) away from the right border; driving anchors given (relative motion) keep the identity.
    assert (shifted[..., 4:-12] - src[..., 12:-4]).abs().max() < 1e-3
    assert given.background is None and (given.prediction - src).abs().max() < 1e-3


def test_the_background_anchor_starts_as_the_identity_and_always_gives_it_for_the_source_itself():
    from internet.motion import BackgroundMotion

    torch.manual_seed(0)
    config = load_config("tiny")
    background = BackgroundMotion(config.anchors, config.motion_size).eval()
    src, drv = frames(64, batch=2)
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3)
    with torch.no_grad():
        assert torch.allclose(background(src, drv), identity, atol=1e-6)  # new: the paper's identity term
        for layer in (background.detector.heatmap, background.detector.jacobian):
            layer.weight.normal_(0, 0.1)  # as after training: the anchor and its axes depend on the frame
        moved = background(src, drv)
        same = background(src, src)
    assert (moved - identity).abs().max() > 1e-3
    assert torch.allclose(same, identity, atol=1e-5)  # the same frame: no camera motion


def test_background_values_other_than_identity_or_affine_are_config_errors():
    with pytest.raises(ConfigError, match="background"):
        load_config("tiny", ["motion.background=tps"])


def test_the_papers_pyramid_is_two_2x_upsamplings_of_the_quarter_resolution_flow():
    """At downscale 4, F^1 and F^2 are F^0 upsampled 2x once and twice (what older checkpoints were trained with)."""
    model = build("tiny")
    src, drv = frames(64)
    with torch.no_grad():
        out = model(src, drv)
    up = out.flows[0]
    for flow in out.flows[1:]:
        up = upsample2x(up.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        assert torch.equal(flow, up)
    assert torch.equal(out.confidences[2], upsample2x(upsample2x(out.confidences[0])))


def test_at_full_resolution_dense_motion_the_coarser_levels_resample_the_output_sized_flow():
    """At downscale 1, F^2 (the output's size) is the network's own flow and F^0, F^1 are it resampled down."""
    model = INTERNet(load_config("tiny", ["motion.downscale=1"])).eval()
    src, drv = frames(64)
    with torch.no_grad():
        out = model(src, drv)
    assert [f.shape[1] for f in out.flows] == [16, 32, 64]
    for flow in out.flows[:2]:
        assert torch.equal(flow, resize_grid(out.flows[2], flow.shape[1], flow.shape[2]))
    assert not torch.allclose(out.flows[1], upsample2x(out.flows[0].permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
