"""The benchmarks' view of the model: the inference copy driven for throughput, and the plain float32 eager
form beside it, with how far the two are apart.

:class:`FastINTERNet` runs an :class:`~internet.model.INTERNet` through the inference copy
(:mod:`internet.speedups.inference_copy`): the source is encoded once per video, driving frames go in batches
that share it (``FastOptions.batch``), everything under ``torch.inference_mode``; optionally ``torch.compile``
(inductor, weights frozen and pre-packed) and bf16 autocast for the convolutions, both off by default on CPU
because they did not pay there (docs/performance.md). ``FastINTERNet.reference(...)`` keeps the plain float32
eager form (``model(source, driving)`` per frame), and :func:`compare` reports the max abs diff and PSNR.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from internet.geometry import Anchors
from internet.model import INTERNet, INTERNetOutput, SourceState
from internet.speedups.inference_copy import (
    inplace_activations,
    merge_motion_heads,
    plain_copy,
    prepack_convolutions,
    subpixel_upsampling,
)

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
        model = plain_copy(self.model)
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


