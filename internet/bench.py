"""Benchmarks: ``python -m internet.bench [--json FILE] [--presets ...] [--pipeline]``.

Per preset: ms/frame at batch 1 and at the best batch, peak RSS, parameter count and GFLOPs/frame, on CPU
(and CUDA when present). Absolute times on shared machines are noise, so every run also times a
FOMM-style reference network (same layers as FOMM's 256/512 generator: 64-128-256 channels, 6 residual
blocks at 1/4 resolution, dense motion at 1/4) and reports our time as a ratio of it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from internet.config import load_config
from internet.layers import ConvBlock, DownBlock, ResBlock, UpBlock
from internet.model import INTERNet


@dataclass
class BenchResult:
    name: str
    device: str
    image_size: int
    params_m: float
    gflops_per_frame: float
    ms_per_frame_batch1: float
    best_batch: int
    ms_per_frame_best: float
    peak_rss_mb: float
    threads: int


class FommStyleReference(nn.Module):
    """A FOMM-shaped generator + dense motion for timing only (random weights, no claims on quality)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        cfg = load_config("internet-512" if size == 512 else "internet-256")
        self.stage1 = INTERNet(cfg)  # detector + dense motion have FOMM's U-Net shapes
        self.encoder = nn.Sequential(ConvBlock(3, 64, 7), DownBlock(64, 128), DownBlock(128, 256))
        self.bottleneck = nn.Sequential(*[ResBlock(256) for _ in range(6)])
        self.decoder = nn.Sequential(UpBlock(256, 128), UpBlock(128, 64), nn.Conv2d(64, 3, 7, padding=3))

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        src_anchors = self.stage1.detect(source)
        drv_anchors = self.stage1.detect(driving)
        motion = self.stage1.motion(source, src_anchors, drv_anchors)
        feats = self.encoder(source)
        warped = nn.functional.grid_sample(feats, motion.flows[0], align_corners=True) * motion.confidences[0]
        return torch.sigmoid(self.decoder(self.bottleneck(warped)))


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _bench_one(name: str, device: str, batches: tuple[int, ...], repeats: int, queue) -> None:
    torch.manual_seed(0)
    if name.startswith("fomm-style-"):
        size = int(name.rsplit("-", 1)[1])
        model = FommStyleReference(size).eval().to(device)
    else:
        model = INTERNet(load_config(name)).eval().to(device)
        size = model.config.image_size
    params = sum(p.numel() for p in model.parameters()) / 1e6

    def run(b: int):
        src = torch.rand(1, 3, size, size, device=device).expand(b, -1, -1, -1)
        drv = torch.rand(b, 3, size, size, device=device)

        def call():
            with torch.inference_mode():
                model(src, drv)
            if device == "cuda":
                torch.cuda.synchronize()

        return call

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.rand(1, 3, size, size, device=device), torch.rand(1, 3, size, size, device=device))
    gflops = counter.get_total_flops() / 1e9
    per_batch = {b: _time(run(b), repeats) / b * 1000 for b in batches}
    best = min(per_batch, key=per_batch.get)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(
        BenchResult(
            name,
            device,
            size,
            round(params, 2),
            round(gflops, 2),
            round(per_batch[1], 1),
            best,
            round(per_batch[best], 1),
            round(rss, 1),
            torch.get_num_threads(),
        )
    )


def bench(name: str, device: str = "cpu", batches: tuple[int, ...] = (1, 2, 4), repeats: int = 3) -> BenchResult:
    """Run one preset in a fresh process so that its peak RSS is its own."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_bench_one, args=(name, device, batches, repeats, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--presets", nargs="+", default=["internet-512", "ss4x-512", "internet-256"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="skip the FOMM-style reference timing")
    parser.add_argument("--pipeline", action="store_true", help="benchmark the animation pipeline instead")
    args, rest = parser.parse_known_args(argv)
    if args.pipeline:
        from internet import bench_pipeline

        return bench_pipeline.main(rest + (["--json", str(args.json)] if args.json else []))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    names = list(args.presets)
    if not args.no_reference:
        names += sorted(
            {f"fomm-style-{load_config(n).image_size}" for n in args.presets} & {"fomm-style-256", "fomm-style-512"}
        )
    results = [bench(n, d, tuple(sorted(set(args.batches) | {1})), args.repeats) for d in devices for n in names]
    by_key = {(r.name, r.device): r for r in results}
    report = {
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
        },
        "results": [asdict(r) for r in results],
    }
    print(
        f"{'model':<16}{'dev':<6}{'size':>5}{'params M':>10}{'GFLOPs':>9}{'ms b=1':>9}{'best b':>8}"
        f"{'ms best':>9}{'RSS MB':>9}{'x FOMM':>8}"
    )
    for r in results:
        ref = by_key.get((f"fomm-style-{r.image_size}", r.device))
        ratio = r.ms_per_frame_batch1 / ref.ms_per_frame_batch1 if ref and not r.name.startswith("fomm") else None
        if ratio is not None:
            report.setdefault("ratios_vs_fomm_style", {})[f"{r.name}/{r.device}"] = round(ratio, 3)
        print(
            f"{r.name:<16}{r.device:<6}{r.image_size:>5}{r.params_m:>10.2f}{r.gflops_per_frame:>9.1f}"
            f"{r.ms_per_frame_batch1:>9.1f}{r.best_batch:>8}{r.ms_per_frame_best:>9.1f}{r.peak_rss_mb:>9.0f}"
            f"{'' if ratio is None else f'{ratio:8.2f}'}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
