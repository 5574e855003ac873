"""INTERNet: Stage I (anchors, dense motion, confidence map) + Stage II (generator), as in Fig 6."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from internet.anchors import AnchorDetector
from internet.checkpoint import load_state_dict, read_config, save_state_dict
from internet.config import ModelConfig, load_config, to_dict
from internet.errors import CheckpointError
from internet.generator import Generator, SourceFeatures
from internet.geometry import Anchors, warp
from internet.motion import BackgroundMotion, DenseMotion, MotionOutput


@dataclass
class INTERNetOutput:
    """Everything one forward pass predicts; lists are coarse to fine."""

    prediction: torch.Tensor  # (B, 3, H, W) in [0, 1]
    anchors_source: torch.Tensor  # (B, K, 2) in [-1, 1], x then y
    anchors_driving: torch.Tensor  # (B, K, 2)
    jacobians_source: torch.Tensor  # (B, K, 2, 2)
    jacobians_driving: torch.Tensor  # (B, K, 2, 2)
    weights: torch.Tensor  # (B, K+1, h, w) soft weights omega (index 0 = background), sum to 1
    flows: list[torch.Tensor]  # [(B, H_i, W_i, 2)] sampling grids F^i
    confidences: list[torch.Tensor]  # [(B, 1, H_i, W_i)] confidence maps M^i in [0, 1]
    heatmaps_driving: torch.Tensor | None = None  # (B, K, h, w) anchor heatmaps of the driving frame
    background: torch.Tensor | None = None  # (B, 2, 3) affine background term T_0; None = identity (the paper's)

    def deformed(self, source: torch.Tensor) -> torch.Tensor:
        """The source image warped by the finest flow (for visualisation)."""
        return warp(source, self.flows[-1])


@dataclass
class SourceState:
    """What is computed once per source image and reused for every driving frame."""

    image: torch.Tensor  # (B, 3, S, S)
    anchors: Anchors
    features: SourceFeatures


class INTERNet(nn.Module):
    """The full generator side of INTERNet: ``model(source, driving) -> INTERNetOutput``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        k = config.anchors.num_anchors
        self.detector = AnchorDetector(config.anchors, config.motion_size, config.norm)
        size = config.image_size
        self.dense_motion = DenseMotion(
            config.motion, k, config.dense_motion_size, sizes=(size // 4, size // 2, size), norm_kind=config.norm
        )
        self.generator = Generator(config.generator, config.norm)
        self.background = (
            BackgroundMotion(config.anchors, config.motion_size, config.norm)
            if config.motion.background == "affine"
            else None
        )

    # ------------------------------------------------------------------ inference building blocks
    def detect(self, frames: torch.Tensor) -> Anchors:
        """Anchors and Jacobians of frames (B, 3, S, S) in [0, 1]."""
        return self.detector(frames)

    def prepare_source(self, source: torch.Tensor) -> SourceState:
        """Detect the source anchors and encode the source once."""
        self._check_input(source, "source")
        return SourceState(image=source, anchors=self.detect(source), features=self.generator.encoder(source))

    def motion(
        self,
        source: torch.Tensor,
        anchors_source: Anchors,
        anchors_driving: Anchors,
        background: torch.Tensor | None = None,
    ) -> MotionOutput:
        """Stage I dense motion and confidence pyramids (Eq 5); ``background`` = affine T_0 or None (identity)."""
        return self.dense_motion(source, anchors_source, anchors_driving, background)

    def animate(
        self,
        state: SourceState,
        driving: torch.Tensor | None = None,
        anchors_driving: Anchors | None = None,
    ) -> INTERNetOutput:
        """Render driving frames from a prepared source; ``anchors_driving`` overrides detection.

        A batch of B driving frames may share a source of batch 1 (the source is broadcast). With an affine
        background term (``MotionConfig.background``) and driving frames, T_0 is predicted from both frames;
        with driving anchors given (relative motion, cross-identity animation) T_0 stays the identity.
        """
        background = None
        if anchors_driving is None:
            if driving is None:
                raise ValueError("give driving frames or driving anchors")
            self._check_input(driving, "driving")
            anchors_driving = self.detect(driving)
            if self.background is not None:
                background = self.background(state.image, driving)
        b = anchors_driving.points.shape[0]
        state = _broadcast(state, b)
        motion = self.motion(state.image, state.anchors, anchors_driving, background)
        prediction = self.generator.decode(state.features, motion.flows, motion.confidences, state.image)
        return INTERNetOutput(
            prediction=prediction,
            anchors_source=state.anchors.points,
            anchors_driving=anchors_driving.points,
            jacobians_source=state.anchors.jacobians,
            jacobians_driving=anchors_driving.jacobians,
            weights=motion.weights,
            flows=motion.flows,
            confidences=motion.confidences,
            heatmaps_driving=anchors_driving.heatmaps,
            background=motion.background,
        )

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> INTERNetOutput:
        """O_t = G(S; D_t): one frame per driving frame (Sec 3.1)."""
        return self.animate(self.prepare_source(source), driving)

    def _check_input(self, x: torch.Tensor, name: str) -> None:
        s = self.config.image_size
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != s or x.shape[3] != s:
            raise ValueError(f"{name} must be (B, 3, {s}, {s}) for preset {self.config.name!r}, got {tuple(x.shape)}")

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_state_dict(self.state_dict(), directory / "model.safetensors", dtype=dtype)
        tmp = directory / "config.json.tmp"
        tmp.write_text(json.dumps(to_dict(self.config), indent=2) + "\n", encoding="utf-8")
        tmp.replace(directory / "config.json")
        return directory

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        config: ModelConfig | str | None = None,
        device: torch.device | str = "cpu",
    ) -> INTERNet:
        """Load a ``save_pretrained`` directory; with ``config`` given, the checkpoint must match it."""
        directory = Path(directory)
        saved = read_config(directory / "config.json")
        if config is not None:
            expected = load_config(config) if isinstance(config, str) else config
            if to_dict(expected) != to_dict(saved):
                raise CheckpointError(
                    f"{directory} holds a {saved.name!r} checkpoint (image_size {saved.image_size}, "
                    f"skips {saved.generator.skip_mode}), not the requested {expected.name!r}"
                )
        model = cls(saved)
        load_state_dict(model, directory / "model.safetensors")
        return model.to(device).eval()


def _broadcast(state: SourceState, batch: int) -> SourceState:
    if state.image.shape[0] == batch:
        return state
    if state.image.shape[0] != 1:
        raise ValueError(f"source batch {state.image.shape[0]} does not match driving batch {batch}")

    def rep(t: torch.Tensor) -> torch.Tensor:
        return t.expand(batch, *t.shape[1:])

    a = state.anchors
    anchors = Anchors(rep(a.points), rep(a.jacobians), None if a.heatmaps is None else rep(a.heatmaps))
    f = state.features
    return SourceState(rep(state.image), anchors, SourceFeatures(rep(f.full), rep(f.half), rep(f.quarter)))
