"""The model's inference copy: the same networks and weights, executed faster (what the app and CLI run).

Nothing here changes the networks or their numerics beyond float rounding; what changes is *how* they run:

* tensors and weights use the channels-last layout that oneDNN convolutions prefer on CPU;
* every ``UpBlock`` (2x nearest upsampling, then a 3x3 convolution) is one stride-2 transposed convolution
  at the input's resolution (:class:`SubPixelUpBlock`): each output pixel sees a 2x2 window of the input, so
  2.25x fewer FLOPs and no upsampled copy, the same result up to float rounding;
* on CPU, every convolution's weights are reordered into oneDNN's blocked layout once (:class:`PackedConv2d`)
  instead of on every call: eager PyTorch repeats that reorder per call, which dominates the U-Nets'
  1024-channel levels at 4x4-16x16 (bit-identical outputs);
* the two 7x7 output heads of Stage I run as one convolution (:class:`MergedHeadsDenseMotion`), and the
  ReLUs run in place.

:func:`plain_copy` undoes all of it (the float32 eager reference of the benchmarks, ``benchmarks.reference``).
"""

from __future__ import annotations

import copy

import torch

from internet.layers import UpBlock
from internet.model import INTERNet
from internet.motion import DenseMotion


def plain_copy(model: INTERNet) -> INTERNet:
    """A copy of an inference copy back in the plain eager form (the float32 reference the benchmarks time)."""
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


# The inference-only forms above and the classes they were made from (for plain_copy).
_PLAIN_CLASSES: dict[type, type] = {
    SubPixelUpBlock: UpBlock,
    PackedConv2d: torch.nn.Conv2d,
    MergedHeadsDenseMotion: DenseMotion,
    InplaceReLU: torch.nn.ReLU,
}
