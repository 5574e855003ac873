"""What the app's inspection panel and diagnostics tab show, as plain NumPy images and tables.

Nothing here knows about gradio: :class:`PreviewSession` holds a preview's frames, and the functions turn
one frame into the six inspection images, the export files, or the temporal diagnostics.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from internet.sources.frames import FrameResult, confidence_level
from internet.video.anchors_json import AnchorsJsonWriter
from internet.video.images import save_image
from internet.video.overlays import dominant_weight_map, draw_anchors, flow_colour, heatmap, overlay_panel
from internet.video.temporal import WarpErrorMeter, meter_resolution

# Confidence pyramid levels (Sec 3.2): M^0 at 1/4 of the output, M^1 at 1/2, M^2 at full size.
CONFIDENCE_LEVELS = {"M⁰ (1/4)": 0, "M¹ (1/2)": 1, "M² (full)": 2}
WARP_ERROR_FLOOR = 0.02  # smallest warp error drawn at full brightness (a steady preview stays dark)


@dataclass
class PreviewSession:
    """A preview kept in memory for the inspection panel (one per browser session)."""

    source: np.ndarray  # (S, S, 3) the framed source photo
    frames: list[FrameResult]
    fps: float
    motion_source: str
    warp_maps: list[np.ndarray] = field(default_factory=list)  # (r, r) per frame, weighted by M_t
    warp_error: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (F,), NaN for frame 0

    @classmethod
    def from_frames(
        cls, source: np.ndarray, frames: list[FrameResult], fps: float, motion_source: str
    ) -> PreviewSession:
        """Keep the frames and recompute the temporal diagnostic's maps (the pipeline keeps only means)."""
        size = source.shape[0]
        meter = WarpErrorMeter(resolution=meter_resolution(size))  # the pipeline's resolution, so means agree
        maps, means = [], []
        for frame in frames:
            error = meter.update(frame.driving, frame.output, frame.motion.confidence)
            maps.append(error.map)
            means.append(error.mean)
        return cls(source, frames, fps, motion_source, maps, np.asarray(means, np.float32))

    @property
    def size(self) -> int:
        return self.source.shape[0]

    def frame(self, index: int) -> FrameResult:
        return self.frames[int(np.clip(int(index), 0, len(self.frames) - 1))]


@dataclass
class InspectionImages:
    """The six tiles of the inspection panel, each (S, S, 3) uint8."""

    source: np.ndarray  # source photo with anchors and Jacobian axes
    driving: np.ndarray  # driving frame with its anchors and axes
    confidence: np.ndarray  # confidence M^i as a heatmap over the output frame
    weights: np.ndarray  # dominant soft weight per pixel (Eq 5)
    flow: np.ndarray  # flow colour wheel
    output: np.ndarray  # output frame (with the driving anchors)

    def as_tuple(self) -> tuple[np.ndarray, ...]:
        return self.source, self.driving, self.confidence, self.weights, self.flow, self.output


def inspection_images(session: PreviewSession, index: int, anchors: bool, level: int) -> InspectionImages:
    """Frame ``index`` of a preview; ``level`` picks the confidence map M^level (0 coarse .. 2 full)."""
    frame, size = session.frame(index), session.size
    m = frame.motion
    source, driving, output = session.source, frame.driving, frame.output
    if anchors:
        source = draw_anchors(source, m.anchors_source, m.jacobians_source)
        driving = draw_anchors(driving, m.anchors_on_driving, m.jacobians_driving)
        output = draw_anchors(output, m.anchors_driving)
    confidence = blend(heatmap(confidence_level(m, level, size), size), frame.output, 0.7)
    weights = blend(dominant_weight_map(m.weights, size), frame.output, 0.8)
    return InspectionImages(source, driving, confidence, weights, flow_colour(m.flow, size), output)


def blend(overlay: np.ndarray, base: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha`` of ``overlay`` over ``base`` (resized to the overlay)."""
    if base.shape[:2] != overlay.shape[:2]:
        base = cv2.resize(base, overlay.shape[1::-1], interpolation=cv2.INTER_AREA)
    return cv2.addWeighted(overlay, alpha, base, 1.0 - alpha, 0.0)


def warp_error_image(session: PreviewSession, index: int) -> np.ndarray:
    """The temporal diagnostic of frame ``index`` as a heatmap over its output frame, on one scale for the
    whole preview (its 99.5th percentile, at least ``WARP_ERROR_FLOOR``) so frames compare."""
    frame = session.frame(index)
    vmax = max(float(np.percentile(np.stack(session.warp_maps), 99.5)), WARP_ERROR_FLOOR)
    return blend(heatmap(session.warp_maps[frame.index], session.size, vmax=vmax), frame.output, 0.75)


def export_frame(session: PreviewSession, index: int, folder: Path) -> list[Path]:
    """Write the 2×4 overlay panel of frame ``index`` (PNG) and the preview's anchors (JSON)."""
    frame = session.frame(index)
    panel = overlay_panel(frame, session.source, session.warp_maps[frame.index], tile=session.size)
    png = save_image(folder / f"overlays_frame_{frame.index:04d}.png", panel)
    meta = {
        "fps": session.fps,
        "size": session.size,
        "motion": session.motion_source,
        "frames": len(session.frames),
        "selected_frame": frame.index,
        "coordinates": "[-1, 1], x then y, align_corners=True",
    }
    path = folder / "anchors_preview.json"
    with AnchorsJsonWriter(path, meta) as writer:
        for f, error in zip(session.frames, session.warp_error):
            writer.write(f, float(error))
    return [png, path]


@dataclass
class WarpErrorSeries:
    """One run's per-frame temporal diagnostic for the plot."""

    run: str  # "preview" or "render"
    fps: float
    values: np.ndarray  # (F,), NaN for frame 0


def warp_error_table(series: list[WarpErrorSeries]):
    """A long-format DataFrame (frame, seconds, warp error, run) for ``gr.LinePlot``; NaNs dropped."""
    import pandas as pd

    rows = [
        {"frame": i, "seconds": i / s.fps, "warp error": float(v), "run": s.run}
        for s in series
        for i, v in enumerate(s.values)
        if not math.isnan(float(v))
    ]
    return pd.DataFrame(rows, columns=["frame", "seconds", "warp error", "run"])


def model_card(checkpoint: Path | None, model) -> str:
    """Markdown about the loaded checkpoint: its README (front matter removed) and its configuration."""
    if model is None:
        return (
            "**No model checkpoint is loaded.** Put one under `assets/checkpoints/<name>/` "
            "(`model.safetensors` + `config.json`) or set `INTERNET_CHECKPOINT`; until then the "
            "training-free **pose rig** is the only motion source."
        )
    config = model.config
    params = sum(p.numel() for p in model.parameters())
    lines = [
        f"**Checkpoint** `{checkpoint.name if checkpoint else 'in memory'}` — preset `{config.name}`, "
        f"{config.image_size}² output, {config.anchors.num_anchors} anchors, {params / 1e6:.1f} M params.",
        "",
    ]
    readme = checkpoint / "README.md" if checkpoint else None
    if readme is not None and readme.is_file():
        text = readme.read_text(encoding="utf-8")
        if text.startswith("---"):
            end = text.find("\n---", 3)
            text = text[end + 4 :] if end >= 0 else text
        lines.append(text.strip())
    else:
        lines.append("```json\n" + json.dumps(_config_summary(config), indent=2) + "\n```")
    return "\n".join(lines)


def _config_summary(config) -> dict:
    from internet.config import to_dict

    return to_dict(config)
