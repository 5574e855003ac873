"""Property-based tests (hypothesis) for the geometry, the framing and the config parsing.

Complements the example-based checks of ``test_geometry.py``: here inputs are drawn at random (shapes,
matrices, shifts, crops, nested override mappings) and each test states a law that must hold for all of them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from internet.config import PRESETS, ModelConfig, from_dict, load_config, merge, parse_overrides, to_dict
from internet.errors import ConfigError
from internet.geometry import (
    Anchors,
    compose_flow,
    identity_grid,
    invert_2x2,
    relative_anchors,
    resize_grid,
    warp,
)
from internet.video.framing import Box, Crop, frame_video
from training.config import ExperimentConfig, experiment_to_dict, load_experiment

TEMPORAL = ["none", "extrinsic", "intrinsic"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(-4.0, 4.0, allow_nan=False, allow_infinity=False)


# ------------------------------------------------------------------------------------------- geometry


@st.composite
def well_conditioned(draw, batch: int = 5) -> torch.Tensor:
    """(batch, 2, 2) float64 matrices with singular values in [0.2, 5] (condition number <= 25)."""
    out = []
    for _ in range(batch):
        a, b = draw(st.floats(-math.pi, math.pi)), draw(st.floats(-math.pi, math.pi))
        s1, s2 = draw(st.floats(0.2, 5.0)), draw(st.floats(0.2, 5.0))
        flip = draw(st.sampled_from([1.0, -1.0]))
        rot = lambda t: torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])  # noqa: E731
        out.append(rot(a) @ torch.diag(torch.tensor([s1, flip * s2])) @ rot(b))
    return torch.stack(out).double()


@st.composite
def anchors(draw, k: int) -> Anchors:
    points = torch.tensor(draw(st.lists(st.tuples(finite, finite), min_size=k, max_size=k))).double() / 4
    return Anchors(points[None], draw(well_conditioned(k))[None])


@SETTINGS
@given(well_conditioned())
def test_invert_2x2_is_a_left_and_right_inverse(m):
    inv = invert_2x2(m)
    eye = torch.eye(2, dtype=m.dtype).expand_as(m)
    assert torch.allclose(inv @ m, eye, atol=1e-9) and torch.allclose(m @ inv, eye, atol=1e-9)


@SETTINGS
@given(st.lists(finite, min_size=4, max_size=4), st.floats(0.0, 1e-6))
def test_invert_2x2_of_any_matrix_is_finite(entries, shrink):
    """Singular and nearly singular matrices (det pushed below eps) still give finite inverses."""
    m = torch.tensor(entries, dtype=torch.float32).view(2, 2) * shrink
    assert torch.isfinite(invert_2x2(m)).all()


@SETTINGS
@given(st.integers(3, 12).flatmap(lambda k: st.tuples(anchors(k), anchors(k))), st.booleans())
def test_relative_motion_from_the_source_itself_is_the_driving_pose(pair, adapt_scale):
    """reference == source: the displacement is measured from the source, so the result is the driver."""
    source, driving = pair
    assume(float(_area(source.points)) > 1e-3)
    out = relative_anchors(source, driving, source, adapt_scale)
    assert torch.allclose(out.points, driving.points, atol=1e-9)
    assert torch.allclose(out.jacobians, driving.jacobians, atol=1e-8)


@SETTINGS
@given(st.integers(3, 12).flatmap(lambda k: st.tuples(anchors(k), anchors(k), anchors(k))), st.booleans())
def test_relative_motion_with_reference_equal_to_driving_is_the_source(triple, adapt_scale):
    source, driving, _ = triple
    out = relative_anchors(source, driving, driving, adapt_scale)
    assert torch.allclose(out.points, source.points, atol=1e-9)
    assert torch.allclose(out.jacobians, source.jacobians, atol=1e-8)


def _area(points: torch.Tensor) -> torch.Tensor:
    centred = points - points.mean(dim=1, keepdim=True)
    return torch.linalg.det(centred.transpose(1, 2) @ centred)


@SETTINGS
@given(st.integers(4, 24), st.integers(4, 24), st.integers(-3, 3), st.integers(-3, 3), st.integers(0, 2**31 - 1))
def test_warp_by_an_integer_translation_is_a_roll_on_the_interior(h, w, dx, dy, seed):
    assume(abs(dx) < w - 1 and abs(dy) < h - 1)
    image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    shift = torch.tensor([2.0 * dx / (w - 1), 2.0 * dy / (h - 1)], dtype=torch.float64)
    out = warp(image, (identity_grid(h, w, dtype=torch.float64) + shift)[None])
    rolled = torch.roll(image, shifts=(-dy, -dx), dims=(2, 3))  # out(y, x) = image(y + dy, x + dx)
    ys = slice(max(0, -dy), h - max(0, dy))
    xs = slice(max(0, -dx), w - max(0, dx))
    assert torch.allclose(out[..., ys, xs], rolled[..., ys, xs], atol=1e-9)


@SETTINGS
@given(
    st.lists(st.floats(-2, 2), min_size=6, max_size=6),
    st.integers(2, 20), st.integers(2, 20), st.integers(2, 70), st.integers(2, 70),
)  # fmt: skip
def test_resize_grid_keeps_any_affine_grid_affine(theta, h, w, big_h, big_w):
    a = torch.tensor(theta, dtype=torch.float64).view(2, 3)
    affine = lambda hh, ww: identity_grid(hh, ww, dtype=torch.float64) @ a[:, :2].T + a[:, 2]  # noqa: E731
    resized = resize_grid(affine(h, w)[None], big_h, big_w)[0]
    assert torch.allclose(resized, affine(big_h, big_w), atol=1e-9)


@SETTINGS
@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_a_convex_combination_of_transforms_stays_between_them(k, seed):
    """F = Σ ω_i T_i (Eq 5), ω ≥ 0, Σ ω = 1, lies within the per-pixel range of the T_i; equal T_i give T."""
    g = torch.Generator().manual_seed(seed)
    transforms = torch.randn(1, k + 1, 5, 7, 2, generator=g, dtype=torch.float64)
    weights = torch.softmax(3 * torch.randn(1, k + 1, 5, 7, generator=g, dtype=torch.float64), dim=1)
    flow = compose_flow(weights, transforms)
    assert (flow >= transforms.min(dim=1).values - 1e-12).all()
    assert (flow <= transforms.max(dim=1).values + 1e-12).all()
    same = transforms[:, :1].expand_as(transforms)
    assert torch.allclose(compose_flow(weights, same), transforms[:, 0], atol=1e-12)


# ------------------------------------------------------------------------------------------- framing


@SETTINGS
@given(st.integers(-500, 500), st.integers(-500, 500), st.integers(1, 2000), st.integers(2, 1024),
       st.lists(st.tuples(st.floats(-1e3, 3e3), st.floats(-1e3, 3e3)), min_size=1, max_size=8))  # fmt: skip
def test_crop_coordinates_round_trip(x0, y0, side, size, points):
    crop = Crop(x0, y0, side)
    pts = np.array(points)
    back = crop.from_crop(crop.to_crop(pts, size), size)
    assert np.allclose(back, pts, atol=1e-3 * max(1.0, side / size) + 1e-4 * np.abs(pts).max())
    # The centre of the window's top-left pixel lands on the centre of the output's top-left pixel area.
    corner = crop.to_crop(np.array([[x0 - 0.5, y0 - 0.5]]), size)
    assert np.allclose(corner, -0.5, atol=1e-3)


@SETTINGS
@given(st.integers(64, 1920), st.integers(64, 1920), st.data())
def test_the_video_crop_holds_the_person_and_stays_in_the_frame(w, h, data):
    """A person box inside the frame is inside the crop; the crop slides to stay inside the frame."""
    bw = data.draw(st.floats(50.0, float(w)))
    bh = data.draw(st.floats(50.0, float(h)))
    bx = data.draw(st.floats(0.0, w - bw))
    by = data.draw(st.floats(0.0, h - bh))
    margin = data.draw(st.floats(0.0, 0.5))
    box = Box(bx, by, bx + bw, by + bh)
    framing = frame_video([box, None, box], margin, (w, h))
    crop = framing.crop
    assert framing.found == 2
    assert crop.x0 <= box.x0 + 1 and crop.y0 <= box.y0 + 1
    assert crop.x0 + crop.side >= box.x1 - 1 and crop.y0 + crop.side >= box.y1 - 1
    if crop.side <= w:
        assert crop.x0 >= 0 and crop.x0 + crop.side <= w
    if crop.side <= h:
        assert crop.y0 >= 0 and crop.y0 + crop.side <= h


# ------------------------------------------------------------------------------------------- config

FIELD_NAMES = sorted(
    {"preset", "name", "image_size", "anchors", "motion", "generator", "discriminator", "num_anchors",
     "num_blocks", "block_expansion", "max_features", "temperature", "estimate_jacobian", "skip_mode",
     "channels", "bottleneck_channels", "num_scales", "num_layers", "heatmap_variance", "model", "data",
     "loss", "train", "lr", "batch_size", "max_steps", "betas", "temporal", "root", "kind", "seed",
     "precision", "device", "repeats", "min_offset", "ema_decay", "lr_discriminator", "style"}
)  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["multiscale", "ss4x", "tiny", "intrinsic", "1e-4", "fp32", "cpu", "[1, 2]", "{a: 1}"]),
)  # fmt: skip
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(min_size=1, max_size=8), st.integers(-3, 3))
values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)  # fmt: skip
mappings = st.dictionaries(keys, values, max_size=5)


def _loads_or_config_error(function, *args):
    """Call ``function``; only ConfigError may escape (never TypeError, KeyError, OverflowError...)."""
    try:
        return function(*args)
    except ConfigError as error:
        message = str(error)
        assert message and "\n" not in message.strip(), f"not one line: {message!r}"
        return None


@SETTINGS
@given(mappings, st.sampled_from(sorted(PRESETS)))
def test_any_model_mapping_loads_or_is_a_config_error(data, preset):
    config = _loads_or_config_error(merge, PRESETS[preset](), data)
    if config is not None:
        assert isinstance(config, ModelConfig)
        assert from_dict(ModelConfig, to_dict(config)) == config


@SETTINGS
@given(mappings)
def test_any_experiment_mapping_loads_or_is_a_config_error(data):
    config = _loads_or_config_error(_experiment_from_mapping, data)
    if config is not None:
        assert isinstance(config, ExperimentConfig)


def _experiment_from_mapping(data: dict) -> ExperimentConfig:
    """What ``load_experiment`` does with a YAML file holding ``data`` (without touching the disk)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        return load_experiment(path)


override_keys = st.lists(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=6)), min_size=1, max_size=3)
odd_values = ["1e-4", ".nan", "[1, 2, 3]", "{x: 1}", "-1", "true", "~", "2**99", "1e400", "[", "'", "9" * 400]
override_values = st.one_of(st.text(max_size=16), st.sampled_from(odd_values))


@SETTINGS
@given(st.lists(st.tuples(override_keys, override_values), max_size=4))
def test_any_override_strings_load_or_are_a_config_error(items):
    overrides = [".".join(parts) + "=" + value for parts, value in items]
    parsed = _loads_or_config_error(parse_overrides, overrides)
    if parsed is not None:
        assert isinstance(parsed, dict)
    _loads_or_config_error(load_config, "tiny", overrides)
    _loads_or_config_error(load_experiment, None, overrides)


@SETTINGS
@given(st.text(max_size=200))
def test_any_yaml_text_loads_or_is_a_config_error(text):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        _loads_or_config_error(load_experiment, path)
        _loads_or_config_error(load_config, path)


@st.composite
def valid_model_configs(draw) -> ModelConfig:
    """Random but valid model configs: a preset with a few fields changed within their legal ranges."""
    base = PRESETS[draw(st.sampled_from(sorted(PRESETS)))]()
    blocks = draw(st.integers(1, 4))
    size = draw(st.sampled_from([64, 128, 256]))
    assume((size // 4) % 2**blocks == 0)
    changes = {
        "image_size": size,
        "anchors": {"num_anchors": draw(st.integers(1, 16)), "num_blocks": blocks,
                    "temperature": draw(st.floats(0.01, 1.0)), "estimate_jacobian": draw(st.booleans())},
        "motion": {"num_blocks": blocks, "heatmap_variance": draw(st.floats(1e-4, 1.0))},
        "generator": {"skip_mode": draw(st.sampled_from(["multiscale", "ss4x"])),
                      "channels": draw(st.lists(st.integers(1, 64), min_size=3, max_size=3))},
    }  # fmt: skip
    return merge(base, changes)


@SETTINGS
@given(valid_model_configs())
def test_model_configs_round_trip_through_dict_json_and_yaml(config):
    assert from_dict(ModelConfig, to_dict(config)) == config
    assert from_dict(ModelConfig, yaml.safe_load(yaml.safe_dump(to_dict(config)))) == config


@SETTINGS
@given(valid_model_configs(), st.floats(1e-6, 1.0), st.integers(1, 64), st.sampled_from(TEMPORAL))
def test_experiment_configs_round_trip_through_yaml(model, lr, batch, temporal):
    config = from_dict(
        ExperimentConfig,
        {"model": model, "train": {"lr": lr, "batch_size": batch}, "loss": {"temporal": temporal}},
    )
    data = experiment_to_dict(config)
    assert from_dict(ExperimentConfig, {**data, "model": from_dict(ModelConfig, data["model"])}) == config
    again = _experiment_from_mapping({**data, "model": {"preset": "tiny", **data["model"]}})
    assert again == config


@pytest.mark.parametrize("bad", ["anchors.num_blocks=1000000000000", "motion.num_blocks=-3", "train.lr=.nan",
                                 "train.lr=.inf", "loss.perceptual=.nan"])  # fmt: skip
def test_absurd_numbers_are_config_errors_quickly(bad):
    """Found by the properties above: huge exponents must not hang, NaN/inf must not slip through."""
    with pytest.raises(ConfigError):
        load_experiment(None, [bad if not bad.startswith(("anchors", "motion")) else "model." + bad])
