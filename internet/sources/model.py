"""The INTERNet model as a motion source (:class:`internet.sources.base.MotionSource`)."""

from __future__ import annotations

import numpy as np
import torch

from internet.geometry import Anchors, relative_anchors
from internet.model import INTERNet
from internet.sources.frames import FrameMotion
from internet.sources.landmarks import Landmarks


class ModelSource:
    """An INTERNet checkpoint: anchors detected on each driving frame, absolute or FOMM-relative (Sec 3.3)."""

    def __init__(self, model: INTERNet, source: np.ndarray, relative: bool, adapt_scale: bool = True) -> None:
        self.model = model
        self.size = model.config.image_size
        if source.shape[:2] != (self.size, self.size):
            raise ValueError(f"the model needs a {self.size}² source, got {source.shape[:2]}")
        self.device = next(model.parameters()).device
        self.relative, self.adapt_scale = relative, adapt_scale
        self.reference: Anchors | None = None
        with torch.inference_mode():
            self.state = model.prepare_source(self._tensor(source))

    def _tensor(self, rgb: np.ndarray) -> torch.Tensor:
        """(1, 3, S, S) in [0, 1], channels-last (the layout the Animator gives the model's weights)."""
        frame = torch.from_numpy(np.ascontiguousarray(rgb)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        return frame.contiguous(memory_format=torch.channels_last)

    def set_reference(self, driving: np.ndarray, landmarks: Landmarks | None) -> None:
        with torch.inference_mode():
            self.reference = self.model.detect(self._tensor(driving))

    @torch.inference_mode()
    def render(self, driving: np.ndarray, landmarks: Landmarks | None) -> tuple[np.ndarray, FrameMotion]:
        frame = self._tensor(driving)
        detected = anchors = self.model.detect(frame)
        if self.relative:
            if self.reference is None:
                self.reference = anchors
            anchors = relative_anchors(self.state.anchors, anchors, self.reference, self.adapt_scale)
        out = self.model.animate(self.state, frame, anchors_driving=anchors)
        image = (out.prediction[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        motion = FrameMotion(
            anchors_source=_np(out.anchors_source[0]),
            anchors_driving=_np(out.anchors_driving[0]),
            jacobians_source=_np(out.jacobians_source[0]),
            jacobians_driving=_np(out.jacobians_driving[0]),
            weights=_np(out.weights[0]),
            flow=_np(out.flows[-1][0]),
            confidence=_np(out.confidences[-1][0, 0]),
            confidence_levels=tuple(_np(c[0, 0]) for c in out.confidences),
            anchors_observed=_np(detected.points[0]) if self.relative else None,
        )
        return image, motion


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()
