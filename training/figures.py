"""Figures for docs/reproduction.md from real runs and checkpoints.

    python -m training.figures --ablation runs/ablation --data runs/data/sr128-test --out docs/figures

- ``training_curves.png``: generator/discriminator losses per variant, parsed from each run's ``log.txt``;
- ``metrics.png``: one bar chart per metric (mean ± 95% CI) from ``results.json``, reference rows as lines;
- ``fig9.png``: the Fig 9 layout per variant: source and driving with anchors + Jacobian axes, the dominant
  soft weight omega (Eq 5), the confidence maps M^i at the three skip scales, and the output;
- ``side_by_side.gif``: driving | SS4x-a | SS4x-b | SS4x-c | MS-c on one test clip;
- ``errors.png`` (``--errors LABEL=CHECKPOINT ...``): where the error is: source, driving, output, the source
  warped by the flow, |output - driving| and M, one row per clip and checkpoint.

Drawing reuses ``internet.video.overlays``; everything is rendered from the checkpoints given.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from internet.model import INTERNet, INTERNetOutput
from internet.video.overlays import dominant_weight_map, draw_anchors, heatmap, label
from training.evaluate import TestClip, reenact, synthrunway_clips

CURVES = ("G/total", "G/perceptual", "G/temporal", "D/total")
BAR_METRICS = (("l1", "L1 ↓"), ("psnr", "PSNR ↑"), ("ms_ssim", "MS-SSIM ↑"), ("warp_error", "E_warp ↓"),
               ("interp_psnr", "Interp-PSNR* ↑"))  # fmt: skip
_STEP_LINE = re.compile(r"INFO step (\d+)\s+(.*)$")


def read_log(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars from a ``training.train`` log.txt: {key: [(step, value), ...]} (resumed runs append)."""
    series: dict[str, dict[int, float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _STEP_LINE.search(line)
        if not match:
            continue
        step = int(match.group(1))
        for item in match.group(2).split():
            key, _, value = item.partition("=")
            try:
                series.setdefault(key, {})[step] = float(value)
            except ValueError:
                continue
    return {k: sorted(v.items()) for k, v in series.items()}


def training_curves(runs: dict[str, Path], out: Path, smooth: int = 5) -> Path:
    """Loss curves of several runs (moving average over ``smooth`` logged points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    for name, run in runs.items():
        series = read_log(run / "log.txt")
        for ax, key in zip(axes, CURVES):
            if key not in series:
                continue
            steps, values = map(np.asarray, zip(*series[key]))
            k = min(smooth, len(values))
            ax.plot(steps[k - 1 :], np.convolve(values, np.ones(k) / k, mode="valid"), label=name)
    for ax, key in zip(axes, CURVES):
        ax.set_title(key)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def metric_bars(results: dict, out: Path) -> Path:
    """Per-metric bar charts with 95% CI error bars; static-source and ground-truth values as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["variants"])
    fig, axes = plt.subplots(1, len(BAR_METRICS), figsize=(3.4 * len(BAR_METRICS), 3.2))
    for ax, (key, title) in zip(axes, BAR_METRICS):
        means = [results["variants"][n]["overall"][key] for n in names]
        cis = [results["variants"][n]["overall_ci95"][key] for n in names]
        ax.bar(names, means, yerr=cis, capsize=3, color=["#8da0cb"] * 3 + ["#fc8d62"] * (len(names) - 3))
        for ref, style in (("static_source", "--"), ("ground_truth", ":")):
            value = results["baselines"][ref]["overall"][key]
            if value is not None and value < 99:  # the PSNR cap would flatten the chart
                ax.axhline(value, color="k", linestyle=style, linewidth=1, label=ref.replace("_", " "))
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _u8(image: torch.Tensor) -> np.ndarray:
    return (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


@torch.no_grad()
def fig9_row(model: INTERNet, source: torch.Tensor, driving: torch.Tensor, name: str, tile: int) -> np.ndarray:
    """One row of Fig 9: source | driving (anchors + axes) | omega | M^0 | M^1 | M^2 | output."""
    out: INTERNetOutput = model(source[None], driving[None])

    def fit(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, (tile, tile), interpolation=cv2.INTER_AREA)

    tiles = [
        label(draw_anchors(fit(_u8(source)), out.anchors_source[0].numpy(), out.jacobians_source[0].numpy()),
              f"{name}: source"),
        label(draw_anchors(fit(_u8(driving)), out.anchors_driving[0].numpy(), out.jacobians_driving[0].numpy()),
              "driving"),
        label(dominant_weight_map(out.weights[0].numpy(), tile), "weights w"),
        *[label(heatmap(m[0, 0].numpy(), tile), f"M^{i}") for i, m in enumerate(out.confidences)],
        label(fit(_u8(out.prediction[0])), "output"),
    ]  # fmt: skip
    return np.hstack(tiles)


def fig9(models: dict[str, INTERNet], clip: TestClip, t: int, out: Path, tile: int = 160) -> Path:
    """The Fig 9-style panel, one row per model, for frame t of a test clip (source = frame 0)."""
    rows = [fig9_row(m, clip.frames[0], clip.frames[t], name, tile) for name, m in models.items()]
    cv2.imwrite(str(out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return out


def checkpoint_fig9(model: INTERNet, clips: list[TestClip], t: int, out: Path, tile: int = 160) -> Path:
    """Fig 9 for one model: a row per test clip (frame t driven from frame 0), to see whether its anchors follow
    the same body parts from person to person."""
    rows = [fig9_row(model, c.frames[0], c.frames[min(t, len(c.frames) - 1)], c.name[-9:], tile) for c in clips]
    cv2.imwrite(str(out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return out


@torch.no_grad()
def error_row(model: INTERNet, source: torch.Tensor, driving: torch.Tensor, name: str, tile: int) -> np.ndarray:
    """source | driving | output | F(S) (the source deformed by the flow) | |output - driving| x4 | M^2."""
    out: INTERNetOutput = model(source[None], driving[None])
    error = ((out.prediction[0] - driving).abs().mean(0, keepdim=True) * 4).expand(3, -1, -1)
    images = [source, driving, out.prediction[0], out.deformed(source[None])[0], error,
              out.confidences[-1][0].expand(3, -1, -1)]  # fmt: skip
    names = [f"{name}: source", "driving", "output", "warped source", "|error| x4", "M"]
    return np.hstack([label(cv2.resize(_u8(x), (tile, tile), interpolation=cv2.INTER_NEAREST), n)
                      for x, n in zip(images, names)])  # fmt: skip


def error_figure(models: dict[str, INTERNet], clips: list[TestClip], t: int, out: Path, tile: int = 128) -> Path:
    """A row per clip and model: frame t driven from frame 0, with the warped source, the error and M."""
    rows = [error_row(m, c.frames[0], c.frames[min(t, len(c.frames) - 1)], f"{label_} {c.name[-3:]}", tile)
            for c in clips for label_, m in models.items()]  # fmt: skip
    cv2.imwrite(str(out), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    return out


def side_by_side_gif(models: dict[str, INTERNet], clip: TestClip, out: Path, every: int = 2, fps: float = 15) -> Path:
    """driving | model 1 | model 2 | ... for every ``every``-th frame of a clip, as a looping GIF."""
    import imageio.v2 as imageio

    videos = {name: reenact(m, clip.frames, torch.device("cpu")) for name, m in models.items()}
    frames = []
    for t in range(0, len(clip.frames), every):
        tiles = [label(_u8(clip.frames[t]), f"driving {t}")]
        tiles += [label(_u8(v[t]), name) for name, v in videos.items()]
        frames.append(np.hstack(tiles))
    imageio.mimsave(out, frames, duration=1000 / fps, loop=0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.figures", description=__doc__.split("\n\n")[0])
    p.add_argument("--ablation", default="runs/ablation", help="folder with one run per variant + results.json")
    p.add_argument("--data", default="runs/data/sr128-test", help="SynthRunway test clips")
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--clip", type=int, default=0, help="index of the test clip to show")
    p.add_argument("--frame", type=int, default=45, help="driving frame for fig9.png")
    p.add_argument("--gif-variants", default="SS4x-a,SS4x-b,SS4x-c,MS-c")
    p.add_argument("--checkpoint", help="instead: Fig 9 (fig9-default.png) and a GIF for this one checkpoint")
    p.add_argument("--clips", type=int, default=4, help="with --checkpoint / --errors: test clips, one row each")
    p.add_argument("--errors", action="append", default=[], metavar="LABEL=CHECKPOINT",
                   help="instead: errors.png for these checkpoints (repeatable)")  # fmt: skip
    args = p.parse_args(argv)
    root, out = Path(args.ablation), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.errors:
        models = {k: INTERNet.from_pretrained(v) for k, v in (e.split("=", 1) for e in args.errors)}
        size = next(iter(models.values())).config.image_size
        clips = list(synthrunway_clips(Path(args.data), size))[: args.clips]
        print(error_figure(models, clips, args.frame, out / "errors.png"))
        return 0
    if args.checkpoint:
        model = INTERNet.from_pretrained(args.checkpoint)
        clips = list(synthrunway_clips(Path(args.data), model.config.image_size))[: args.clips]
        print(checkpoint_fig9(model, clips, args.frame, out / "fig9-default.png"))
        print(side_by_side_gif({"default checkpoint": model}, clips[args.clip], out / "default.gif"))
        return 0
    runs = {d.name: d for d in sorted(root.iterdir()) if (d / "final" / "config.json").is_file()}
    if not runs:
        print(f"error: no trained variants under {root}", file=sys.stderr)
        return 1
    order = ["SS4x-a", "SS4x-b", "SS4x-c", "MS-b", "MS-c"]
    runs = dict(sorted(runs.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    print(training_curves(runs, out / "training_curves.png"))
    if (root / "results.json").is_file():
        print(metric_bars(json.loads((root / "results.json").read_text()), out / "metrics.png"))
    models = {name: INTERNet.from_pretrained(run / "final") for name, run in runs.items()}
    size = next(iter(models.values())).config.image_size
    clip = list(synthrunway_clips(Path(args.data), size))[args.clip]
    print(fig9(models, clip, min(args.frame, len(clip.frames) - 1), out / "fig9.png"))
    chosen = {n: models[n] for n in args.gif_variants.split(",") if n in models}
    print(side_by_side_gif(chosen, clip, out / "side_by_side.gif"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
