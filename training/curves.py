"""Learning curves on held-out (or training) clips: every checkpoint of a run against the static source.

``python -m training.curves --run runs/sr128 --data runs/data/sr128-test [--frames 48] [--json curve.json]``

A training log shows the losses the model optimises; whether it *learned the task* shows only on clips, against
the trivial baseline of repeating the source frame. This evaluates the generator of each checkpoint in
``RUN/checkpoints`` with the self-reenactment protocol of ``training.evaluate`` (source = frame 0), on the
cheap metrics (L1, MS-SSIM, warp error with the exact SynthRunway flow; no DIS interpolation), and writes one
row per step with the static-source and ground-truth rows of the same clips beside it. Point ``--data`` at the
run's own training clips to see whether it can fit them at all (the overfitting check), and at test clips
(seed >= 10000) to see whether it generalises.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from internet.checkpoint import load_state_dict
from internet.config import ModelConfig, from_dict
from internet.errors import CheckpointError, InputError
from internet.model import INTERNet
from training import metrics
from training.checkpointing import list_checkpoints
from training.evaluate import TestClip, reenact, synthrunway_clips


@dataclass
class CurvePoint:
    """Mean over clips of the cheap metrics at one step (or of a reference video when ``step`` is -1)."""

    step: int
    l1: float
    ms_ssim: float
    warp_error: float


@dataclass
class Curve:
    """A run's curve and the reference rows of the same clips."""

    run: str
    data: str
    clips: int
    frames: int
    points: list[CurvePoint]
    static_source: CurvePoint
    ground_truth: CurvePoint


def video_point(step: int, videos: list[torch.Tensor], clips: list[TestClip]) -> CurvePoint:
    """L1, MS-SSIM and warp error (exact flow, visible pixels) of ``videos`` against ``clips``, clip means."""
    l1 = [metrics.l1(v, c.frames) for v, c in zip(videos, clips)]
    ssim = [metrics.ms_ssim(v, c.frames) for v, c in zip(videos, clips)]
    warp = [float(np.mean(metrics.warp_error(v, c.flow, c.visible))) for v, c in zip(videos, clips)]
    return CurvePoint(step, float(np.mean(l1)), float(np.mean(ssim)), float(np.mean(warp)))


def _checkpoint_state(path: Path) -> tuple[ModelConfig, int]:
    """The model config and step recorded in a training checkpoint's ``state.json``."""
    try:
        document = json.loads((path / "state.json").read_text(encoding="utf-8"))
        config = from_dict(ModelConfig, document["config"]["model"], str(path / "state.json"))
        return config, int(document["progress"]["step"])
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot read the model config of {path}: {exc}") from None


def checkpoint_generator(path: Path) -> INTERNet:
    """The generator of a training checkpoint folder (``step-*/generator.safetensors`` + ``state.json``)."""
    model = INTERNet(_checkpoint_state(path)[0])
    load_state_dict(model, path / "generator.safetensors")
    return model.eval()


def learning_curve(run: Path, data: Path, frames: int = 48, every: int = 1) -> Curve:
    """Evaluate every ``every``-th checkpoint of ``run`` (and always the last) on the clips in ``data``."""
    found = list_checkpoints(run / "checkpoints")
    if not found:
        raise InputError(f"no checkpoints in {run / 'checkpoints'}")
    chosen = found[::every] + ([found[-1]] if (len(found) - 1) % every else [])
    size = _checkpoint_state(found[0])[0].image_size
    clips = list(synthrunway_clips(data, size, frames, split="all"))
    if not clips:
        raise InputError(f"no SynthRunway clips in {data}")
    points = []
    for path in chosen:
        step = _checkpoint_state(path)[1]
        model = checkpoint_generator(path)
        points.append(video_point(step, [reenact(model, c.frames, torch.device("cpu")) for c in clips], clips))
        print(f"step {step}: L1 {points[-1].l1:.4f}  MS-SSIM {points[-1].ms_ssim:.4f}", file=sys.stderr)
    static = video_point(-1, [c.frames[:1].expand_as(c.frames) for c in clips], clips)
    truth = video_point(-1, [c.frames for c in clips], clips)
    return Curve(str(run), str(data), len(clips), len(clips[0].frames), points, static, truth)


def plot_curves(curves: dict[str, Path], out: Path, title: str = "") -> Path:
    """L1 / static-source L1, MS-SSIM and warp error / ground truth's per step for curve JSONs (label -> file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_l1, ax_ssim, ax_warp) = plt.subplots(1, 3, figsize=(13, 3.4))
    for label, path in curves.items():
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        steps = [q["step"] for q in data["points"]]
        static = data["static_source"]
        ax_l1.plot(steps, [q["l1"] / static["l1"] for q in data["points"]], marker=".", label=label)
        ax_ssim.plot(steps, [q["ms_ssim"] for q in data["points"]], marker=".", label=label)
        truth = data["ground_truth"]["warp_error"]
        ax_warp.plot(steps, [q["warp_error"] / truth for q in data["points"]], marker=".", label=label)
    ax_l1.axhline(1.0, color="k", lw=0.8, ls="--")
    ax_l1.axhline(0.6, color="g", lw=0.8, ls=":")
    ax_l1.set_ylabel("L1 / static-source L1")
    ax_ssim.axhline(static["ms_ssim"], color="k", lw=0.8, ls="--")
    ax_ssim.set_ylabel("MS-SSIM (dashed: static source)")
    ax_warp.axhline(1.0, color="k", lw=0.8, ls="--")
    ax_warp.axhline(1.5, color="g", lw=0.8, ls=":")
    ax_warp.set_ylabel("warp error / ground truth's")
    for ax in (ax_l1, ax_ssim, ax_warp):
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    ax_l1.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.curves", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="training output folder (holds checkpoints/)")
    p.add_argument("--data", help="SynthRunway clips to evaluate on (training or test)")
    p.add_argument("--frames", type=int, default=48, help="frames per clip (0 = all)")
    p.add_argument("--every", type=int, default=1, help="evaluate every N-th checkpoint (and the last)")
    p.add_argument("--json", help="write the curve here")
    p.add_argument("--plot", metavar="PNG", help="instead: plot the --curve LABEL=JSON files into this figure")
    p.add_argument("--curve", action="append", default=[], metavar="LABEL=JSON", help="a curve to plot")
    p.add_argument("--title", default="", help="title of the --plot figure")
    p.add_argument("--bundle", help="with --plot: also merge the curves into this JSON (label -> curve; a page's data)")
    args = p.parse_args(argv)
    if args.plot:
        curves = dict(item.split("=", 1) for item in args.curve)
        print(plot_curves({k: Path(v) for k, v in curves.items()}, Path(args.plot), args.title))
        if args.bundle:
            bundle = Path(args.bundle)
            merged = json.loads(bundle.read_text(encoding="utf-8")) if bundle.is_file() else {}
            merged.update({k: json.loads(Path(v).read_text(encoding="utf-8")) for k, v in curves.items()})
            bundle.write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")
        return 0
    if not (args.run and args.data):
        p.error("--run and --data are required (or --plot with --curve)")
    try:
        curve = learning_curve(Path(args.run), Path(args.data), args.frames, args.every)
    except (InputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    s = curve.static_source
    print(f"static source: L1 {s.l1:.4f}  MS-SSIM {s.ms_ssim:.4f}  warp {s.warp_error:.2e}")
    print(f"ground truth: warp {curve.ground_truth.warp_error:.2e}")
    for q in curve.points:
        print(f"step {q.step:6d}: L1 {q.l1:.4f} ({q.l1 / s.l1:.2f}x static)  MS-SSIM {q.ms_ssim:.4f}  "
              f"warp {q.warp_error:.2e}")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(asdict(curve), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
