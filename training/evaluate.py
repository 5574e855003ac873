"""Evaluate a checkpoint by self-reenactment (Sec 4): ``python -m training.evaluate --checkpoint DIR --data DIR``.

Protocol: for every test clip, the source is its first frame, the driving video is the clip itself and the
ground truth is the driving frames. Per clip and overall (mean ± 95% CI over clips):

- reconstruction: L1, PSNR (per frame, averaged), MS-SSIM (pytorch-msssim); LPIPS and FID only with their
  weight files (``--lpips-weights``, ``--inception-weights``), otherwise reported as not computed (null);
- temporal: the warping error E_warp (``training.metrics.warp_error``) with the exact SynthRunway flow on
  visible pixels (DIS flow + forward-backward mask for real videos), and the Interp-PSNR stand-in (frame t
  interpolated from t-1 and t+1 with DIS flow, PSNR against the generated frame t). The paper used a
  learned interpolator; ours is classical, so Interp-PSNR compares rows of one table only.

Two reference rows come from the same code: ``static_source`` (the source frame repeated) and
``ground_truth`` (the driving frames themselves; its E_warp is the floor the flow allows).
SynthRunway folders (``*/meta.json``) use their test split (seed >= 10000) by default; any other folder is
read as real videos (``.mp4`` files or frame folders, ``training.data.VideoFolderDataset``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from internet.errors import CheckpointError, ConfigError, InputError
from internet.model import INTERNet
from training import metrics
from training.data import fit_frame, load_clip, to_tensor
from training.flow import dis_flow, estimate_backward_flow

INTERP_NOTE = (
    "Interp-PSNR stand-in: frame t interpolated from t-1 and t+1 with classical DIS optical flow (the paper"
    " used a learned interpolator), PSNR against frame t; compare rows of the same table only"
)
NOT_COMPUTED = {
    "lpips": "not computed: needs --lpips-weights (and an LPIPS implementation in the environment)",
    "fid": "not computed: needs --inception-weights (and an FID implementation in the environment)",
}


@dataclass
class MetricValues:
    """One row of metrics; None = not computed. ``warp_error_floor`` is E_warp of the ground truth."""

    l1: float | None = None
    psnr: float | None = None
    ms_ssim: float | None = None
    lpips: float | None = None
    fid: float | None = None
    warp_error: float | None = None
    warp_error_floor: float | None = None
    interp_psnr: float | None = None


@dataclass
class ClipResult:
    name: str
    frames: int
    model: MetricValues
    static_source: MetricValues | None  # None when the reference rows were not requested
    ground_truth: MetricValues | None


@dataclass
class Summary:
    """Mean and 95% CI half-width over clips, per metric."""

    mean: MetricValues
    ci95: MetricValues


@dataclass
class EvaluationReport:
    checkpoint: str
    data: str
    flow: str  # "exact SynthRunway flow" or "DIS + forward-backward mask"
    overall: Summary
    baselines: dict[str, Summary]  # static_source, ground_truth
    clips: list[ClipResult]
    not_computed: dict[str, str] = field(default_factory=dict)


@dataclass
class TestClip:
    """Frames (T, 3, S, S) in [0, 1] and the backward flow of each adjacent pair with its validity."""

    name: str
    frames: torch.Tensor
    flow: torch.Tensor  # (T-1, S, S, 2) pixels: frame_t(x) ≈ frame_{t-1}(x + flow[t-1](x))
    visible: torch.Tensor  # (T-1, S, S) bool


# --------------------------------------------------------------------------- data


def is_synthrunway(root: Path) -> bool:
    return any(root.glob("*/meta.json"))


def synthrunway_clips(root: Path, size: int, max_frames: int = 0, split: str = "test") -> Iterator[TestClip]:
    """SynthRunway clips of ``split`` ("test", "train" or "all") with their exact flow and visibility."""
    folders = sorted(p.parent for p in root.glob("*/meta.json"))
    clips = [load_clip(f) for f in folders]
    clips = [c for c in clips if split == "all" or c.meta.split == split]
    if not clips:
        raise InputError(f"No SynthRunway clips of split {split!r} in {root} (test clips have seed >= 10000)")
    for clip in clips:
        n = len(clip) if max_frames <= 0 else min(max_frames, len(clip))
        frames = torch.stack([to_tensor(fit_frame(clip.frame(t), size)) for t in range(n)])
        flow = np.array(clip.flow[: n - 1], np.float32)
        visible = np.array(clip.visible[: n - 1])
        if clip.meta.size != size:
            flow, visible = _resize_flows(flow, visible, size)
        yield TestClip(clip.name, frames, torch.from_numpy(flow), torch.from_numpy(visible))


def video_clips(root: Path, size: int, max_frames: int = 0, list_file: str | None = None) -> Iterator[TestClip]:
    """Real videos (FashionVideo layout) fitted to ``size``, with DIS backward flow and fb-consistency."""
    from training.data import VideoFolderDataset

    dataset = VideoFolderDataset(root, size=size, list_file=list_file)
    for i, name in enumerate(dataset.names):
        frames: list[np.ndarray] = []
        for frame in dataset.iter_frames(i):
            frames.append(frame)
            if 0 < max_frames <= len(frames):
                break
        if len(frames) < 3:
            warnings.warn(f"Skipping {name}: {len(frames)} frames (need 3)", stacklevel=2)
            continue
        estimates = [estimate_backward_flow(a, b) for a, b in zip(frames[:-1], frames[1:])]
        yield TestClip(
            name,
            torch.stack([to_tensor(f) for f in frames]),
            torch.from_numpy(np.stack([e.flow for e in estimates]).astype(np.float32)),
            torch.from_numpy(np.stack([e.valid for e in estimates])),
        )


def _resize_flows(flow: np.ndarray, visible: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    out_f, out_v = [], []
    for f, v in zip(flow, visible):
        h, w = f.shape[:2]
        out_f.append(cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) * np.array([size / w, size / h]))
        out_v.append(cv2.resize(v.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.999)
    return np.stack(out_f).astype(np.float32), np.stack(out_v)


# --------------------------------------------------------------------------- metrics of one clip


def video_metrics(
    prediction: torch.Tensor,
    clip: TestClip,
    flow_fn: metrics.FlowFn = dis_flow,
) -> MetricValues:
    """All per-clip metrics of a generated video against the clip's frames (ground truth)."""
    target = clip.frames
    warp = metrics.warp_error(prediction, clip.flow, clip.visible)
    floor = metrics.warp_error(target, clip.flow, clip.visible)
    return MetricValues(
        l1=metrics.l1(prediction, target),
        psnr=float(np.mean([metrics.psnr(p, t) for p, t in zip(prediction, target)])),
        ms_ssim=metrics.ms_ssim(prediction, target),
        warp_error=float(np.mean(warp)),
        warp_error_floor=float(np.mean(floor)),
        interp_psnr=float(np.mean(metrics.interp_psnr(prediction, flow_fn))),
    )


@torch.no_grad()
def reenact(model: INTERNet, frames: torch.Tensor, device: torch.device, batch: int = 16) -> torch.Tensor:
    """Self-reenactment: source = frames[0], driving = every frame; returns (T, 3, S, S) on the CPU."""
    state = model.prepare_source(frames[:1].to(device))
    out = [model.animate(state, frames[i : i + batch].to(device)).prediction.float().cpu()
           for i in range(0, len(frames), batch)]  # fmt: skip
    return torch.cat(out).clamp(0, 1)


def evaluate_model(
    model: INTERNet,
    clips: Iterator[TestClip] | list[TestClip],
    device: torch.device | str = "cpu",
    flow_fn: metrics.FlowFn = dis_flow,
    progress: bool = True,
    checkpoint: str = "",
    data: str = "",
    flow: str = "exact SynthRunway flow",
    baselines: bool = True,
) -> EvaluationReport:
    """Run the protocol over ``clips``: model, static-source and ground-truth rows, per clip and overall.

    ``baselines=False`` skips the two reference rows (they do not depend on the model).
    """
    device = torch.device(device)
    model = model.to(device).eval()
    results: list[ClipResult] = []
    bar = tqdm(clips, desc="evaluate", unit="clip", disable=not progress, file=sys.stderr)
    for clip in bar:
        prediction = reenact(model, clip.frames, device)
        static = clip.frames[:1].expand_as(clip.frames).contiguous()  # the "static source" video
        results.append(
            ClipResult(
                name=clip.name,
                frames=len(clip.frames),
                model=video_metrics(prediction, clip, flow_fn),
                static_source=video_metrics(static, clip, flow_fn) if baselines else None,
                ground_truth=video_metrics(clip.frames, clip, flow_fn) if baselines else None,
            )
        )
        bar.set_postfix(l1=f"{results[-1].model.l1:.4f}", E_warp=f"{results[-1].model.warp_error:.4f}")
    if not results:
        raise InputError(f"No clips to evaluate in {data or 'the given clips'}")
    return EvaluationReport(
        checkpoint=checkpoint,
        data=data,
        flow=flow,
        overall=summarize([r.model for r in results]),
        baselines={
            "static_source": summarize([r.static_source for r in results if r.static_source is not None]),
            "ground_truth": summarize([r.ground_truth for r in results if r.ground_truth is not None]),
        }
        if baselines
        else {},
        clips=results,
        not_computed=dict(NOT_COMPUTED),
    )


def summarize(rows: list[MetricValues]) -> Summary:
    """Mean ± 95% CI over clips for every metric that was computed."""
    mean, ci = MetricValues(), MetricValues()
    for f in fields(MetricValues):
        values = [getattr(r, f.name) for r in rows if getattr(r, f.name) is not None]
        if values:
            m, h = metrics.mean_ci95(values)
            setattr(mean, f.name, m)
            setattr(ci, f.name, h)
    return Summary(mean, ci)


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    device: torch.device | str = "cpu",
    max_frames: int = 0,
    split: str = "test",
    list_file: str | None = None,
    progress: bool = True,
    baselines: bool = True,
) -> EvaluationReport:
    """Load a ``from_pretrained`` folder and evaluate it on a SynthRunway or real-video folder."""
    data = Path(data)
    if not data.is_dir():
        raise InputError(f"Data folder not found: {data}")
    model = INTERNet.from_pretrained(checkpoint, device=device)
    size = model.config.image_size
    if is_synthrunway(data):
        clips: Callable[[], Iterator[TestClip]] = lambda: synthrunway_clips(data, size, max_frames, split)  # noqa: E731
        flow = "exact SynthRunway flow, visible pixels"
    else:
        clips = lambda: video_clips(data, size, max_frames, list_file)  # noqa: E731
        flow = "DIS flow, forward-backward consistent pixels"
    return evaluate_model(
        model, clips(), device, progress=progress, checkpoint=str(checkpoint), data=str(data), flow=flow,
        baselines=baselines,
    )  # fmt: skip


# --------------------------------------------------------------------------- report


def report_to_dict(report: EvaluationReport) -> dict[str, Any]:
    """The ``--json`` layout: overall / baselines (same keys, null = not computed) / clips, + CIs."""
    return {
        "checkpoint": report.checkpoint,
        "data": report.data,
        "flow": report.flow,
        "overall": asdict(report.overall.mean),
        "overall_ci95": asdict(report.overall.ci95),
        "baselines": {k: asdict(s.mean) for k, s in report.baselines.items()},
        "baselines_ci95": {k: asdict(s.ci95) for k, s in report.baselines.items()},
        "clips": [asdict(c) for c in report.clips],
        "not_computed": report.not_computed,
        "notes": {"interp_psnr": INTERP_NOTE, "psnr_cap_db": metrics.PSNR_CAP},
    }


def format_report(report: EvaluationReport) -> str:
    """A plain-text table: model, static source and ground truth, mean ± 95% CI."""
    names = [f.name for f in fields(MetricValues)]
    rows = [("model", report.overall), *report.baselines.items()]
    lines = [f"{'row':<15}" + "".join(f"{n:>22}" for n in names)]
    for label, s in rows:
        cells = []
        for n in names:
            m, h = getattr(s.mean, n), getattr(s.ci95, n)
            cells.append(f"{'n/c':>22}" if m is None else f"{f'{m:.4f} ± {h:.4f}':>22}")
        lines.append(f"{label:<15}" + "".join(cells))
    lines.append(f"{len(report.clips)} clips; flow: {report.flow}")
    lines.extend(f"{k}: {v}" for k, v in report.not_computed.items())
    lines.append(INTERP_NOTE)
    return "\n".join(lines)


def _check_perceptual_flags(lpips_weights: str | None, inception_weights: str | None) -> None:
    """LPIPS / FID need their networks' weights and an implementation; never fall back to random weights."""
    for flag, path in (("--lpips-weights", lpips_weights), ("--inception-weights", inception_weights)):
        if path is None:
            continue
        if not Path(path).is_file():
            raise InputError(f"{flag}: file not found: {path}")
        raise InputError(
            f"{flag} was given, but this environment has no LPIPS/FID implementation (the lpips / "
            f"pytorch-fid packages and torchvision are not installed); run without it to report them as null"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a from_pretrained folder (model.safetensors + config.json)")
    p.add_argument("--data", required=True, help="SynthRunway folder or a folder of real videos")
    p.add_argument("--json", help="write the full report (overall, baselines, clips) to this file")
    p.add_argument("--split", default="test", choices=["test", "train", "all"], help="SynthRunway split")
    p.add_argument("--list", dest="list_file", help="real videos: evaluate only those named in this file")
    p.add_argument("--max-frames", type=int, default=0, help="frames per clip from the start (0 = all)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1...")
    p.add_argument("--lpips-weights", help="LPIPS weights (not computed without them)")
    p.add_argument("--inception-weights", help="Inception weights for FID (not computed without them)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        _check_perceptual_flags(args.lpips_weights, args.inception_weights)
        report = evaluate_checkpoint(
            args.checkpoint, args.data, args.device, args.max_frames, args.split, args.list_file,
            progress=not args.no_progress,
        )  # fmt: skip
    except (InputError, CheckpointError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report_to_dict(report), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
