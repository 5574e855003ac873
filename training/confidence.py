"""Does the confidence map know where the warp fails? AUC of 1 - M against SynthRunway's disocclusion truth.

``python -m training.confidence --checkpoint DIR --data CLIPS [--frames 48] [--json out.json]``

In self-reenactment the output frame t is made from the source (frame 0). A pixel of frame t is *disoccluded*
when the surface it shows is not visible in frame 0 (it was hidden behind another part, or outside the frame):
no warp of the source can supply it, and the confidence map M (Sec 3.2) should be low there. SynthRunway knows
this exactly: the clip's scene is rebuilt from its seed and index, and ``backward_flow`` from frame t straight to
frame 0 gives that visibility. The score is the ROC AUC of 1 - M^2 (the finest confidence map) as a detector of
disoccluded pixels, over all pixels of the clip's frames (0.5: M says nothing; 1: M is low exactly there).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from internet.errors import CheckpointError, InputError
from internet.model import INTERNet, INTERNetOutput
from training.data import SynthRunwayClip, fit_frame, load_clip, to_tensor
from training.synthrunway.figure import sample_scene
from training.synthrunway.render import backward_flow, render_frame

T = TypeVar("T")


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); NaN without both classes."""
    scores, positives = np.asarray(scores, np.float64).ravel(), np.asarray(positives, bool).ravel()
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    # Mid-ranks: every run of equal scores gets the mean of the ranks it spans.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def disoccluded_from_source(folder: Path, frames: int) -> np.ndarray:
    """(T, S, S) bool at the clip's own size: pixel x of frame t shows a surface not visible in frame 0."""
    meta = load_clip(folder).meta
    size = meta.size
    scene = sample_scene(np.random.default_rng([meta.seed, meta.index]), meta.num_frames, meta.fps, size)
    first = scene.layout(0)[0]
    out = np.zeros((frames, size, size), bool)
    for t in range(1, frames):
        layout = scene.layout(t)[0]
        owner = render_frame(scene.parts, layout, size).owner
        out[t] = ~backward_flow(scene.parts, first, layout, owner).visible
    return out


@dataclass
class ConfidenceScore:
    """AUC of 1 - M for one clip, and the share of disoccluded pixels it was measured on."""

    clip: str
    auc: float
    disoccluded_fraction: float
    mean_confidence_disoccluded: float
    mean_confidence_visible: float


@torch.no_grad()
def reenacted(
    model: INTERNet, folder: Path, frames: int, batch: int = 16
) -> tuple[SynthRunwayClip, list[INTERNetOutput]]:
    """Self-reenact the first ``frames`` frames of a clip (0 = all; source = frame 0), ``batch`` frames per output."""
    clip = load_clip(folder)
    n = min(frames, len(clip)) if frames > 0 else len(clip)
    size = model.config.image_size
    video = torch.stack([to_tensor(fit_frame(clip.frame(t), size)) for t in range(n)])
    state = model.prepare_source(video[:1])
    return clip, [model.animate(state, video[i : i + batch]) for i in range(0, n, batch)]


@torch.no_grad()
def confidence_score(model: INTERNet, folder: Path, frames: int = 48) -> ConfidenceScore:
    """Self-reenact the clip (source = frame 0) and score M^2 against the exact disocclusion of each frame."""
    clip, outputs = reenacted(model, folder, frames)
    size = model.config.image_size
    confidence = torch.cat([out.confidences[-1].float() for out in outputs])[:, 0]
    n = len(confidence)
    truth = torch.from_numpy(disoccluded_from_source(folder, n)).float()[:, None]
    truth = F.interpolate(truth, size=(size, size), mode="area")[:, 0] > 0.5
    confidence = F.interpolate(confidence[:, None], size=(size, size), mode="bilinear", align_corners=True)[:, 0]
    # Frame 0 is the source itself (nothing is disoccluded); M rounded to 1e-6 so float noise of the upsampling
    # does not order pixels whose confidence is the same.
    m, d = np.round(confidence[1:].numpy(), 6), truth[1:].numpy()
    return ConfidenceScore(
        clip=clip.name,
        auc=roc_auc(1.0 - m, d),
        disoccluded_fraction=float(d.mean()),
        mean_confidence_disoccluded=float(m[d].mean()) if d.any() else float("nan"),
        mean_confidence_visible=float(m[~d].mean()),
    )


def clip_score_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line of a per-clip score: --checkpoint, --data, --frames, --json."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--checkpoint", required=True, help="a from_pretrained folder (model.safetensors + config.json)")
    p.add_argument("--data", required=True, help="a folder of SynthRunway clips")
    p.add_argument("--frames", type=int, default=48, help="frames per clip (0 = all)")
    p.add_argument("--json", help="write the per-clip scores here")
    return p


def score_clips(args: argparse.Namespace, score: Callable[[INTERNet, Path, int], T]) -> list[T] | None:
    """``score`` of every SynthRunway clip in ``args.data`` with the checkpoint; None after a one-line error."""
    try:
        model = INTERNet.from_pretrained(args.checkpoint)
        folders = sorted(q.parent for q in Path(args.data).glob("*/meta.json"))
        if not folders:
            raise InputError(f"no SynthRunway clips in {args.data}")
        return [score(model, f, args.frames) for f in folders]
    except (InputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    args = clip_score_parser("python -m training.confidence", __doc__.split("\n\n")[0]).parse_args(argv)
    scores = score_clips(args, confidence_score)
    if scores is None:
        return 2
    for s in scores:
        print(f"{s.clip}: AUC {s.auc:.3f}  disoccluded {100 * s.disoccluded_fraction:.1f} %  "
              f"M there {s.mean_confidence_disoccluded:.3f} vs {s.mean_confidence_visible:.3f} elsewhere")  # fmt: skip
    aucs = [s.auc for s in scores if np.isfinite(s.auc)]
    print(f"mean AUC over {len(aucs)} clips: {np.mean(aucs):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"mean_auc": float(np.mean(aucs)), "clips": [asdict(s) for s in scores]},
                                              indent=1) + "\n", encoding="utf-8")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
