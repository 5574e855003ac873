"""The optimised inference path for INTERNet: the same model and weights, executed faster.

Nothing here changes the networks or their numerics beyond float rounding; what changes is *how* they run:

* the source is encoded and its anchors detected once per video (``prepare_source``), not once per frame;
* driving frames are processed in batches that share that source (``FastOptions.batch``);
* tensors and weights use the channels-last layout that oneDNN convolutions prefer on CPU;
* every ``UpBlock`` (2x nearest upsampling, then a 3x3 convolution) is one stride-2 transposed convolution
  at the input's resolution (:class:`SubPixelUpBlock`): each output pixel sees a 2x2 window of the input, so
  2.25x fewer FLOPs and no upsampled copy, the same result up to float rounding;
* on CPU, every convolution's weights are reordered into oneDNN's blocked layout once (:class:`PackedConv2d`)
  instead of on every call: eager PyTorch repeats that reorder per call, which dominates the U-Nets'
  1024-channel levels at 4x4-16x16 (bit-identical outputs);
* everything runs under ``torch.inference_mode`` (no autograd bookkeeping);
* optionally, ``torch.compile`` (inductor, weights frozen and pre-packed) fuses GroupNorm/ReLU/concat
  around the convolutions, and bf16 autocast runs the convolutions in bfloat16 (GPU, or CPUs with fast
  bf16); both are off by default on CPU because they did not pay there (see ``docs/performance.md``).

``FastINTERNet.reference(...)`` keeps the plain float32 eager form (``model(source, driving)`` per frame)
selectable, and :func:`compare` reports how far the two are apart (max abs diff, PSNR).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from internet.generator import SourceFeatures
from internet.geometry import Anchors
from internet.layers import UpBlock
from internet.model import INTERNet, INTERNetOutput, SourceState
from internet.motion import DenseMotion

# Agreement of the fast path with the float32 eager reference on outputs in [0, 1] (float32 fast path).
MAX_ABS_DIFF = 2e-3
MIN_PSNR_DB = 60.0


@dataclass
class FastOptions:
    """How the fast path executes the model."""

    batch: int | None = None  # driving frames per forward pass; None: default_batch(image size)
    channels_last: bool = True  # NHWC tensors and weights (oneDNN's preferred layout on CPU)
    subpixel: bool = True  # UpBlock convolutions at the input's resolution (SubPixelUpBlock)
    prepack: bool = True  # oneDNN weights packed once (PackedConv2d; CPU float32) and the motion heads merged
    # torch.compile the per-frame networks (inductor; slow first call). It replaces ``prepack``: inductor packs
    # the frozen weights itself, and our per-shape pack caches would make dynamo recompile per layer (on tiny,
    # CPU: first call 104 -> 83 s, then 68 -> 26 ms per 2 frames without them).
    compile: bool = False
    bf16: bool = False  # bfloat16 autocast for the convolutions (changes outputs by ~1e-2)

    def __post_init__(self) -> None:
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"batch must be ≥ 1, got {self.batch}")


def default_batch(image_size: int) -> int:
    """Frames per forward pass of the fast path: 1 from 256² on, 4 below. Batching used to pay at 256² by
    sharing eager PyTorch's per-call weight reorders among the frames; with the weights packed once
    (:class:`PackedConv2d`) it only costs cache: at 256² batch 1 took 0.50x the reference's time, batch 4
    0.57x; at 512² 0.48x vs 0.68x (docs/performance.md)."""
    return 1 if image_size >= 256 else 4


@dataclass
class Agreement:
    """How far two renders of the same frames are apart."""

    max_abs_diff: float
    psnr_db: float  # over all pixels, peak 1.0; inf when identical


class FastINTERNet:
    """Run an :class:`INTERNet` for throughput; ``copy=False`` reformats the given model's weights in place."""

    def __init__(self, model: INTERNet, options: FastOptions | None = None, copy_model: bool = True) -> None:
        options = options or FastOptions()
        if options.batch is None:
            options = dataclasses.replace(options, batch=default_batch(model.config.image_size))
        self.options = options
        self.device = next(model.parameters()).device
        self.model = copy.deepcopy(model) if copy_model else model
        self.model.eval()
        if self.options.subpixel:
            subpixel_upsampling(self.model)
        if self.options.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.options.prepack and not self.options.compile:  # inductor freezes and packs the weights itself
            prepack_convolutions(self.model)
            merge_motion_heads(self.model)
        inplace_activations(self.model)
        self._animate = self._compiled() if self.options.compile else _animate_prediction

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    # ------------------------------------------------------------------------------------------ public
    def prepare_source(self, source: torch.Tensor) -> SourceState:
        """Source anchors and encoder features, once per video (``INTERNet.prepare_source``)."""
        with self._context():
            return self.model.prepare_source(self._layout(source))

    def detect(self, frames: torch.Tensor) -> Anchors:
        """Anchors of a batch of frames (``INTERNet.detect``)."""
        with self._context():
            return _float_anchors(self.model.detect(self._layout(frames)))

    def animate(
        self, state: SourceState, driving: torch.Tensor | None = None, anchors_driving: Anchors | None = None
    ) -> INTERNetOutput:
        """``INTERNet.animate`` for one batch (any size: it is not split)."""
        with self._context():
            out = self.model.animate(state, None if driving is None else self._layout(driving), anchors_driving)
        return _float_output(out)

    def render(self, state: SourceState, driving: torch.Tensor) -> torch.Tensor:
        """Predictions (N, 3, S, S) for N driving frames, in batches of ``options.batch`` (absolute motion)."""
        return torch.cat(list(self.stream(state, driving.split(self.options.batch))), dim=0)

    def stream(self, state: SourceState, batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Predictions for each batch of driving frames as it comes (constant memory in video length)."""
        for driving in batches:
            with self._context():
                prediction = self._animate(self.model, state, self._layout(driving))
            yield prediction.float().contiguous()

    def reference(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        """The plain float32 eager form, one frame at a time: ``model(source, driving_t)`` (the baseline)."""
        model = _plain_copy(self.model)
        with torch.no_grad():
            return torch.cat([model(source, d[None]).prediction for d in driving], dim=0)

    # ------------------------------------------------------------------------------------------ helpers
    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.options.channels_last else x

    def _context(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.options.bf16:
            stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
        return stack

    def _compiled(self):
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # constant-fold and pre-pack the weights (inference only)
        return torch.compile(_animate_prediction, dynamic=False)


def _animate_prediction(model: INTERNet, state: SourceState, driving: torch.Tensor) -> torch.Tensor:
    """The per-frame work of a render: detect the driving anchors, Stage I motion, Stage II decoding."""
    return model.animate(state, driving).prediction


def _plain_copy(model: INTERNet) -> INTERNet:
    plain = copy.deepcopy(model)
    for module in plain.modules():  # back to the plain forwards, without the derived buffers and packs
        if type(module) is InplaceReLU:
            module.inplace = False
        for fast_class, plain_class in _PLAIN_CLASSES.items():
            if type(module) is fast_class:
                module.__class__ = plain_class
        for name in ("transposed_weight", "head_weight", "head_bias"):
            module._buffers.pop(name, None)
        module.__dict__.pop("packed", None)
    return plain.to(memory_format=torch.contiguous_format).float().eval()


def inference_copy(model: INTERNet) -> INTERNet:
    """What the app and CLI run: a copy of ``model`` in eval mode, with sub-pixel up-convolutions,
    channels-last weights and pre-packed convolutions (the caller's model is left as it was, trainable)."""
    fast = copy.deepcopy(model).eval()
    subpixel_upsampling(fast)
    fast.to(memory_format=torch.channels_last)
    prepack_convolutions(fast)
    merge_motion_heads(fast)
    inplace_activations(fast)
    return fast


def _transposed_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(C_out, C_in, 3, 3) -> (C_in, C_out, 4, 4): ``conv3x3(nearest_up2(x))`` as one transposed convolution
    with stride 2 and padding 1.

    On the nearest-upsampled input u[P] = x[P // 2], output row 2i sees x rows (i-1, i, i) through kernel rows
    (0, 1, 2), i.e. w0 on row i-1 and w1 + w2 on row i; output row 2i+1 sees (i, i, i+1): w0 + w1 on row i and
    w2 on row i+1. A stride-2 transposed convolution with padding 1 gives output row 2i+a kernel row k of input
    row i' where 2i' - 1 + k = 2i + a: row 2i takes k = 3 from row i-1 and k = 1 from row i, row 2i+1 takes
    k = 2 from row i and k = 0 from row i+1. So its kernel rows are (w2, w1 + w2, w0 + w1, w0); columns alike."""
    w = weight.detach()
    rows = torch.stack([w[:, :, 2], w[:, :, 1] + w[:, :, 2], w[:, :, 0] + w[:, :, 1], w[:, :, 0]], 2)
    cols = [rows[..., 2], rows[..., 1] + rows[..., 2], rows[..., 0] + rows[..., 1], rows[..., 0]]
    return torch.stack(cols, -1).transpose(0, 1).contiguous()


class SubPixelUpBlock(UpBlock):
    """An :class:`UpBlock` whose ``conv3x3(nearest_up2(x))`` runs at x's resolution (inference only).

    Every output pixel (2i+a, 2j+b) sees a 2x2 window of x, so the block is one stride-2 transposed
    convolution with a 4x4 kernel (:func:`_transposed_kernel`): 4/9 of the FLOPs, no 4x upsampled input, and
    oneDNN writes the interleaved output directly. The same numbers up to float rounding (~1e-6 relative).
    Made by :func:`subpixel_upsampling`, which keeps the parameters (and state-dict keys) as they are and adds
    the kernel as a non-persistent buffer, computed once: retraining the model afterwards would leave it stale."""

    transposed_weight: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _conv_transpose2d(x, self.transposed_weight, self.conv[0].bias, self)
        for layer in list(self.conv)[1:]:  # norm, ReLU
            out = layer(out)
        return out


class _Packs(dict):
    """oneDNN-packed copies of a module's weights, by (which weight, its version, input shape). Derived and
    opaque: a deep copy of the module starts with none (they are made again on its first call)."""

    def __deepcopy__(self, memo: dict) -> _Packs:
        return _Packs()


def _packable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and x.dim() == 4
        and not torch.is_grad_enabled()  # the packed op has no backward: inference only
        and not torch.is_autocast_enabled(x.device.type)  # nor an autocast rule: bf16 takes the plain path
        and torch.backends.mkldnn.is_available()
    )


def _pack(owner: torch.nn.Module, weight: torch.Tensor, x: torch.Tensor, reorder) -> torch.Tensor | None:
    """``weight`` in oneDNN's blocked layout for inputs shaped like ``x``, made by ``reorder`` once per input
    shape and kept in ``owner.packed`` (None where the plain path must run: no cache, not CPU float32
    inference)."""
    packs = getattr(owner, "packed", None)
    if packs is None or not _packable(x, weight):
        return None
    # The weight's version and storage are part of the key, so an in-place update or a move is never stale.
    version = 0 if weight.is_inference() else weight._version  # inference tensors have no version counter
    key = (id(weight), version, weight.data_ptr(), tuple(x.shape))
    packed = packs.get(key)
    if packed is None:
        packs.clear()  # one shape at a time in practice: don't let a changing batch size pile up packs
        packed = packs[key] = reorder(weight.contiguous(memory_format=torch.channels_last), list(x.shape))
    return packed


def _conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding: int | tuple[int, int],
    owner: torch.nn.Module,
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
) -> torch.Tensor:
    """``F.conv2d`` (groups 1, zero padding) with ``weight`` reordered into oneDNN's blocked layout once per
    input shape (:func:`_pack`) instead of on every call as eager PyTorch does. The same primitive computes
    the same numbers either way."""
    padding = [padding, padding] if isinstance(padding, int) else list(padding)
    stride, dilation = list(stride), list(dilation)
    packed = _pack(owner, weight, x, lambda w, shape: torch.ops.mkldnn._reorder_convolution_weight(
        w, padding, stride, dilation, 1, shape))  # fmt: skip
    if packed is None:
        return torch.nn.functional.conv2d(x, weight.to(x.dtype), bias, stride, padding, dilation)
    return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, padding, stride, dilation, 1, "none", [], "")


def _conv_transpose2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, owner: torch.nn.Module
) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, bias, stride=2, padding=1)`` (groups 1), with the weight packed once
    per input shape like :func:`_conv2d`."""
    padding, output_padding, stride, dilation = [1, 1], [0, 0], [2, 2], [1, 1]
    packed = _pack(owner, weight, x, lambda w, shape: torch.ops.mkldnn._reorder_convolution_transpose_weight(
        w, padding, output_padding, stride, dilation, 1, shape))  # fmt: skip
    if packed is None:
        return torch.nn.functional.conv_transpose2d(x, weight.to(x.dtype), bias, stride=2, padding=1)
    return torch.ops.mkldnn._convolution_transpose_pointwise(
        x, packed, bias, padding, output_padding, stride, dilation, 1, "none", [], ""
    )


class PackedConv2d(torch.nn.Conv2d):
    """A ``Conv2d`` whose CPU inference calls use weights packed once for oneDNN (:func:`_conv2d`); training
    (grad enabled), other devices and other dtypes take the plain path. Made by :func:`prepack_convolutions`."""

    packed: _Packs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv2d(x, self.weight, self.bias, self.padding, self, self.stride, self.dilation)


def prepack_convolutions(model: torch.nn.Module) -> int:
    """Give every plain ``Conv2d`` (groups 1, zero padding) and every :class:`SubPixelUpBlock` of ``model``
    a cache of packed weights, in place; returns how many convolutions were converted.

    Eager PyTorch reorders a convolution's weights into oneDNN's blocked layout on every call; for the U-Nets'
    1024-channel levels at 4x4-16x16 that reorder costs more than the arithmetic (a 1024->1024 3x3
    convolution at 8x8: 39 ms per call, 16 ms with packed weights). Packing once per input shape removes it;
    outputs are bit-identical (docs/performance.md)."""
    if not torch.backends.mkldnn.is_available():
        return 0
    count = 0
    for module in model.modules():
        if type(module) is torch.nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros":
            if isinstance(module.padding, str):
                continue
            module.__class__ = PackedConv2d
            module.packed = _Packs()
            count += 1
        elif isinstance(module, SubPixelUpBlock) and not hasattr(module, "packed"):
            module.packed = _Packs()
            count += 1
    return count


def subpixel_upsampling(model: torch.nn.Module) -> int:
    """Turn every :class:`UpBlock` of ``model`` into a :class:`SubPixelUpBlock` in place; returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is UpBlock:
            conv = module.conv[0]
            if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
                continue
            module.__class__ = SubPixelUpBlock
            module.register_buffer("transposed_weight", _transposed_kernel(conv.weight), persistent=False)
            count += 1
    return count


def _float_anchors(a: Anchors) -> Anchors:
    return Anchors(a.points.float(), a.jacobians.float(), None if a.heatmaps is None else a.heatmaps.float())


def _float_output(out: INTERNetOutput) -> INTERNetOutput:
    out.prediction = out.prediction.float().contiguous()
    return out


def compare(fast: torch.Tensor, reference: torch.Tensor) -> Agreement:
    """Max abs difference and PSNR (peak 1) between two (N, 3, H, W) renders in [0, 1]."""
    diff = (fast.float() - reference.float()).abs()
    mse = float(diff.pow(2).mean())
    return Agreement(float(diff.max()), math.inf if mse == 0 else 10 * math.log10(1.0 / mse))


def source_state_like(state: SourceState) -> SourceState:
    """A detached copy of a prepared source (e.g. to reuse one source across fast and reference paths)."""
    a, f = state.anchors, state.features
    return SourceState(
        state.image.clone(),
        Anchors(a.points.clone(), a.jacobians.clone(), None if a.heatmaps is None else a.heatmaps.clone()),
        SourceFeatures(f.full.clone(), f.half.clone(), f.quarter.clone()),
    )


class MergedHeadsDenseMotion(DenseMotion):
    """A :class:`DenseMotion` whose two 7x7 output layers (omega: K+1 channels, M^0: 1) run as one convolution
    with their kernels stacked and zero-padded to 16 outputs (inference only; made by
    :func:`merge_motion_heads`). oneDNN computes few-output convolutions poorly: at 128² with 108 input
    channels the 11- and 1-output layers took 27 + 13 ms, the 16-output one 19 ms. The stacked kernels are
    non-persistent buffers, computed once."""

    head_weight: torch.Tensor
    head_bias: torch.Tensor
    packed: _Packs

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k1 = self.weights.out_channels
        out = _conv2d(features, self.head_weight, self.head_bias, self.weights.padding, self)
        return out[:, :k1], out[:, k1 : k1 + 1]


def merge_motion_heads(model: torch.nn.Module, outputs: int = 16) -> int:
    """Turn every :class:`DenseMotion` of ``model`` into a :class:`MergedHeadsDenseMotion`, in place."""
    count = 0
    for module in model.modules():
        if type(module) is not DenseMotion:
            continue
        w, c = module.weights, module.confidence
        if w.kernel_size != c.kernel_size or w.padding != c.padding or w.bias is None or c.bias is None:
            continue
        weight = torch.cat([w.weight.detach(), c.weight.detach()])
        bias = torch.cat([w.bias.detach(), c.bias.detach()])
        spare = max(0, outputs - weight.shape[0])
        weight = torch.cat([weight, weight.new_zeros(spare, *weight.shape[1:])])
        module.__class__ = MergedHeadsDenseMotion
        layout = torch.channels_last if w.weight.is_contiguous(memory_format=torch.channels_last) else None
        module.register_buffer(
            "head_weight", weight.contiguous(memory_format=layout or torch.contiguous_format), persistent=False
        )
        module.register_buffer("head_bias", torch.cat([bias, bias.new_zeros(spare)]), persistent=False)
        module.packed = _Packs()
        count += 1
    return count


def inplace_activations(model: torch.nn.Module) -> int:
    """Make every ReLU that directly follows a GroupNorm or BatchNorm in an ``nn.Sequential`` work in place (the
    residual blocks' pre-activations): the norm's output is a fresh tensor nobody else reads, so this saves an
    allocation and a pass over memory per ReLU (bit-identical). Returns how many were changed."""
    count = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Sequential):
            continue
        layers = list(module)
        for before, layer in zip(layers, layers[1:]):
            norms = (torch.nn.GroupNorm, torch.nn.BatchNorm2d)
            if type(layer) is torch.nn.ReLU and not layer.inplace and isinstance(before, norms):
                layer.__class__ = InplaceReLU
                layer.inplace = True
                count += 1
    return count


class InplaceReLU(torch.nn.ReLU):
    """A ReLU made in-place by :func:`inplace_activations` (told apart so the reference can undo it)."""


# The inference-only forms above and the classes they were made from (for FastINTERNet.reference).
_PLAIN_CLASSES: dict[type, type] = {
    SubPixelUpBlock: UpBlock,
    PackedConv2d: torch.nn.Conv2d,
    MergedHeadsDenseMotion: DenseMotion,
    InplaceReLU: torch.nn.ReLU,
}
