"""Plots for docs/performance.md from the JSON of ``python -m benchmarks.inference``.

    python tools/performance_figures.py --bench docs/performance/bench.json --out docs/performance

Writes ``time_per_frame.png`` (ms per frame at batch 1 vs output resolution, per model, with the FOMM-style
reference of the same run, and the fast path vs the float32 eager reference) and ``memory.png`` (peak RSS of
a pose-rig render vs video length).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def time_per_frame(bench: dict, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    families: dict[str, list[tuple[int, float]]] = {}
    for row in bench.get("results", []):
        family = re.sub(r"-(256|512)$", "", row["name"])
        families.setdefault(family, []).append((row["image_size"], row["ms_per_frame_batch1"]))
    for family, points in sorted(families.items()):
        points.sort()
        style = "--" if family.startswith("fomm") else "-"
        ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", label=f"{family} (eager)")
    fast = [(bench[k]["image_size"], bench[k]["ms_per_frame"]) for k in bench if k.startswith("internet-")]
    if fast:
        fast.sort()
        ax.plot([p[0] for p in fast], [p[1] for p in fast], marker="s", label="internet (fast path, its own batch)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks([256, 512], ["256²", "512²"])
    ax.set_xlabel("output resolution")
    ax.set_ylabel("ms per frame (CPU, 2 threads)")
    ax.set_title("Time per frame vs resolution")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, out / "time_per_frame.png")


def memory(bench: dict, out: Path) -> Path:
    points = sorted(
        (int(m.group(1)), value)
        for key, value in bench.get("memory", {}).items()
        if (m := re.fullmatch(r"rss_(\d+)_frames_mb", key)) and value
    )
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
    ax.set_xlabel("frames rendered (pose rig, 512², every output)")
    ax.set_ylabel("peak RSS (MB)")
    ax.set_ylim(0, max(p[1] for p in points) * 1.3)
    ax.set_title("Memory vs video length")
    ax.grid(alpha=0.3)
    return _save(fig, out / "memory.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, required=True, help="JSON of python -m benchmarks.inference --json")
    parser.add_argument("--out", type=Path, default=Path("docs/performance"))
    args = parser.parse_args(argv)
    bench = json.loads(args.bench.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    print(time_per_frame(bench, args.out))
    print(memory(bench, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
