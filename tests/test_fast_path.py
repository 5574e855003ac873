"""The fast inference path renders the same frames as the plain float32 eager model (within tolerance)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.reference import MAX_ABS_DIFF, MIN_PSNR_DB, FastINTERNet, FastOptions, compare
from internet.config import load_config
from internet.model import INTERNet


def _model(preset: str, seed: int = 0) -> INTERNet:
    torch.manual_seed(seed)
    model = INTERNet(load_config(preset)).eval()
    # Random but non-trivial Jacobian heads, so the local affine transforms are not all identities, and
    # BatchNorm statistics of real activations, as a trained model has them (not the identity of a new one).
    with torch.no_grad():
        model.detector.jacobian.weight.normal_(0, 0.01)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # a cumulative average over the passes below
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        size = model.config.image_size
        model.train()
        for i in range(2):
            model(_frames(1, size, 100 + i).expand(2, -1, -1, -1), _frames(2, size, 200 + i))
    return model.eval()


def _frames(n: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, size, size, generator=g)
    return (base + 0.3 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("preset", ["tiny", "small-128"])
@pytest.mark.parametrize("options", [FastOptions(batch=3), FastOptions(batch=1, channels_last=False)])
def test_fast_path_matches_reference(preset: str, options: FastOptions) -> None:
    model = _model(preset)
    size = model.config.image_size
    source, driving = _frames(1, size, 1), _frames(5, size, 2)
    fast = FastINTERNet(model, options)
    state = fast.prepare_source(source)
    predicted = fast.render(state, driving)
    reference = fast.reference(source, driving)
    assert predicted.shape == reference.shape == (5, 3, size, size)
    agreement = compare(predicted, reference)
    assert agreement.max_abs_diff <= MAX_ABS_DIFF
    assert agreement.psnr_db >= MIN_PSNR_DB
    # Frames differ from each other, so agreement is frame by frame, not a constant image.
    assert (reference[0] - reference[-1]).abs().max() > 10 * MAX_ABS_DIFF


def test_batches_are_independent_and_in_order() -> None:
    """Frame t of a batched render equals frame t rendered alone: no mixing across the batch."""
    model = _model("tiny")
    size = model.config.image_size
    source, driving = _frames(1, size, 3), _frames(4, size, 4)
    fast = FastINTERNet(model, FastOptions(batch=4))
    state = fast.prepare_source(source)
    together = fast.render(state, driving)
    alone = torch.cat([fast.render(state, driving[i : i + 1]) for i in range(4)])
    assert compare(together, alone).max_abs_diff <= MAX_ABS_DIFF
    shuffled = fast.render(state, driving.flip(0)).flip(0)
    assert compare(shuffled, together).max_abs_diff <= MAX_ABS_DIFF


def test_reference_model_is_left_alone() -> None:
    """The fast path works on a copy: the caller's model keeps its layout and its outputs."""
    model = _model("tiny")
    weight = model.generator.to_rgb.weight
    FastINTERNet(model, FastOptions(channels_last=True))
    assert model.generator.to_rgb.weight is weight
    assert weight.is_contiguous()


def test_a_different_model_does_not_agree() -> None:
    """The comparison can fail: other weights give outputs far outside the tolerance."""
    size = load_config("tiny").image_size
    source, driving = _frames(1, size, 5), _frames(2, size, 6)
    fast = FastINTERNet(_model("tiny", seed=0))
    other = FastINTERNet(_model("tiny", seed=1))
    agreement = compare(fast.render(fast.prepare_source(source), driving), other.reference(source, driving))
    assert agreement.max_abs_diff > 10 * MAX_ABS_DIFF


def test_bf16_stays_close() -> None:
    """bf16 autocast is an option, not the default: its error is reported, and bounded loosely here (an
    untrained BatchNorm model keeps bf16's rounding through every layer: a few pixels differ by up to ~0.3)."""
    model = _model("tiny")
    size = model.config.image_size
    source, driving = _frames(1, size, 7), _frames(2, size, 8)
    fast = FastINTERNet(model, FastOptions(bf16=True))
    predicted = fast.render(fast.prepare_source(source), driving)
    assert predicted.dtype == torch.float32
    agreement = compare(predicted, fast.reference(source, driving))
    assert agreement.max_abs_diff < 0.4 and agreement.psnr_db > 22.0


def test_the_pipelines_channels_last_model_source_matches_the_eager_model() -> None:
    """The app/CLI path (Animator -> ModelSource, channels-last weights and frames, absolute motion) renders
    what the plain NCHW ``model(source, driving)`` renders, within the fast path's tolerance."""
    import copy

    import numpy as np

    from internet.pipeline import Animator
    from internet.sources.model import ModelSource

    model = _model("small-128")
    eager = copy.deepcopy(model)
    size = model.config.image_size
    source, driving = _frames(1, size, 1), _frames(3, size, 2)
    to_rgb = lambda t: (t.permute(1, 2, 0) * 255).round().byte().numpy()  # noqa: E731
    animator = Animator.for_inference(model)
    convs = [p for p in animator.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    motion = ModelSource(animator.model, to_rgb(source[0]), relative=False)
    with torch.inference_mode():
        for frame in driving:
            image, _ = motion.render(to_rgb(frame), None)
            reference = eager(
                torch.from_numpy(to_rgb(source[0])).permute(2, 0, 1)[None].float() / 255,
                torch.from_numpy(to_rgb(frame)).permute(2, 0, 1)[None].float() / 255,
            ).prediction
            expected = (reference[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1  # one 8-bit level of rounding


@pytest.mark.parametrize("channels_last", [False, True])
def test_subpixel_up_block_is_upsampling_then_convolution(channels_last: bool) -> None:
    """conv3x3(nearest_up2(x)) computed at x's resolution equals the direct computation, odd sizes, bias."""
    import copy

    import torch.nn.functional as F

    from internet.layers import UpBlock
    from internet.speedups.inference_copy import SubPixelUpBlock, prepack_convolutions, subpixel_upsampling

    torch.manual_seed(0)
    block = UpBlock(5, 7).eval()
    block.conv[0].bias = torch.nn.Parameter(torch.randn(7))  # the layout must also carry a bias
    x = torch.randn(2, 5, 9, 8)
    with torch.no_grad():  # independent check: upsample by repetition, then a plain convolution
        up = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        expected = block.conv[2](block.conv[1](F.conv2d(up, block.conv[0].weight, block.conv[0].bias, padding=1)))
    fast = copy.deepcopy(block)
    assert subpixel_upsampling(fast) == 1 and isinstance(fast, SubPixelUpBlock)
    assert subpixel_upsampling(fast) == 0  # already converted
    if channels_last:
        fast.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = fast(x)
    assert got.shape == (2, 7, 18, 16)
    assert (got - expected).abs().max() < 1e-5
    assert list(fast.state_dict()) == list(block.state_dict())  # checkpoints keep their keys
    tiny = torch.randn(1, 5, 1, 1)  # one pixel: every output pixel sees padding on one side
    with torch.no_grad():
        assert (fast(tiny) - block(tiny)).abs().max() < 1e-5
    prepack_convolutions(fast)  # oneDNN's packed transposed convolution: the same numbers
    with torch.inference_mode():
        packed = fast(x)
        assert fast.packed and (packed - got).abs().max() < 1e-5


def test_inference_copy_leaves_the_model_alone_and_agrees_with_it() -> None:
    from internet.layers import UpBlock
    from internet.speedups.inference_copy import SubPixelUpBlock, inference_copy

    model = _model("tiny")
    fast = inference_copy(model)
    assert any(isinstance(m, SubPixelUpBlock) for m in fast.modules())
    assert not any(isinstance(m, SubPixelUpBlock) for m in model.modules())
    assert any(type(m) is UpBlock for m in model.modules())
    assert all(p.is_contiguous() for p in model.parameters())
    size = model.config.image_size
    source, driving = _frames(1, size, 3), _frames(2, size, 4)
    with torch.inference_mode():
        expected = model(source.expand(2, -1, -1, -1), driving).prediction
        got = fast(source.expand(2, -1, -1, -1).contiguous(memory_format=torch.channels_last),
                   driving.contiguous(memory_format=torch.channels_last)).prediction  # fmt: skip
    assert compare(got, expected).max_abs_diff < MAX_ABS_DIFF
    fresh = INTERNet(model.config)
    fresh.load_state_dict(fast.state_dict())  # the same keys and shapes as a plain model


@pytest.mark.parametrize("channels_last", [False, True])
def test_packed_convolution_is_the_plain_convolution(channels_last: bool) -> None:
    """A pre-packed convolution computes F.conv2d's numbers (stride, bias, padding), packs once per input
    shape, notices in-place weight updates, and leaves training (grad enabled) to the plain path."""
    import copy

    import torch.nn.functional as F

    from internet.speedups.inference_copy import PackedConv2d, prepack_convolutions

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 10, 3, stride=2, padding=1)
    packed = copy.deepcopy(conv)
    assert prepack_convolutions(packed) == 1 and isinstance(packed, PackedConv2d)
    x = torch.randn(2, 6, 11, 9)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = F.conv2d(x.contiguous(), conv.weight, conv.bias, stride=2, padding=1)  # independent of the module
        got = packed(x)
        assert got.shape == expected.shape == (2, 10, 6, 5)
        assert (got - expected).abs().max() < 1e-5
        if torch.backends.mkldnn.is_available():
            assert len(packed.packed) == 1
            packed(x)
            assert len(packed.packed) == 1  # reused, not packed again
        other = torch.randn(1, 6, 7, 7)
        assert (packed(other) - F.conv2d(other, conv.weight, conv.bias, stride=2, padding=1)).abs().max() < 1e-5
    with torch.no_grad():
        packed.weight.mul_(-1)  # an in-place update must not leave a stale pack behind
    with torch.inference_mode():
        assert (packed(x) + expected - 2 * conv.bias.view(1, -1, 1, 1)).abs().max() < 1e-5
    x.requires_grad_(True)
    packed(x).sum().backward()  # grad enabled: the plain path, differentiable
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.inference_mode():  # bf16 is not silently float32
        assert packed(x.detach()).dtype == torch.bfloat16
    clone = copy.deepcopy(packed)  # packs are derived: a copy starts without them and still works
    assert len(clone.packed) == 0
    with torch.inference_mode():
        assert (clone(x.detach()) - packed(x.detach())).abs().max() == 0


def test_merged_motion_heads_are_the_two_heads() -> None:
    """One stacked, zero-padded 7x7 convolution gives the omega and M^0 logits of the two separate layers."""
    import copy

    from internet.speedups.inference_copy import MergedHeadsDenseMotion, merge_motion_heads

    model = _model("tiny")
    motion = model.dense_motion
    merged = copy.deepcopy(motion)
    assert merge_motion_heads(merged) == 1 and isinstance(merged, MergedHeadsDenseMotion)
    assert list(merged.state_dict()) == list(motion.state_dict())  # the stacked kernels are not saved
    features = torch.randn(2, motion.unet.out_channels, 12, 12)
    with torch.inference_mode():
        weights, confidence = merged.heads(features)
        assert weights.shape == (2, motion.weights.out_channels, 12, 12) and confidence.shape == (2, 1, 12, 12)
        assert (weights - motion.weights(features)).abs().max() < 1e-5
        assert (confidence - motion.confidence(features)).abs().max() < 1e-5


def test_in_place_activations_and_the_reference_copy() -> None:
    """Only ReLUs right after a GroupNorm become in-place; the reference form undoes every fast-path change."""
    from internet.layers import ResBlock
    from internet.speedups.inference_copy import InplaceReLU, inplace_activations, plain_copy

    torch.manual_seed(0)
    block = ResBlock(8).eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.inference_mode():
        expected = block(x)
        assert inplace_activations(block) == 2
        assert all(type(m) is InplaceReLU for m in block.body if isinstance(m, torch.nn.ReLU))
        assert torch.equal(block(x), expected)
    fast = FastINTERNet(_model("tiny"))
    plain = plain_copy(fast.model)
    fast_only = ("SubPixelUpBlock", "PackedConv2d", "MergedHeadsDenseMotion", "InplaceReLU")
    assert any(type(m).__name__ in fast_only for m in fast.model.modules())
    assert not any(type(m).__name__ in fast_only for m in plain.modules())
    assert not any(hasattr(m, "packed") or "transposed_weight" in m._buffers for m in plain.modules())
    assert list(plain.state_dict()) == list(fast.model.state_dict())


def test_compile_leaves_the_packing_to_inductor() -> None:
    """With ``compile`` the model keeps plain convolutions (inductor freezes and packs them itself; our pack
    caches would make dynamo recompile per layer); without it they are packed. Compiling itself is not run here
    (minutes on CPU)."""
    from internet.speedups.inference_copy import MergedHeadsDenseMotion, PackedConv2d

    def kinds(options: FastOptions) -> set[type]:
        return {type(m) for m in FastINTERNet(_model("tiny"), options).model.modules()}

    assert {PackedConv2d, MergedHeadsDenseMotion} <= kinds(FastOptions())
    compiled = kinds(FastOptions(compile=True))
    assert PackedConv2d not in compiled and MergedHeadsDenseMotion not in compiled
    assert torch.nn.Conv2d in compiled
