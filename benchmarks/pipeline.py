"""Pipeline benchmark: frames/s per stage for both motion sources, and peak memory vs video length.

    python -m benchmarks.pipeline [--frames 60] [--sizes 256 512] [--motions pose-rig model]
        [--outputs result all] [--rounds 3] [--rss 60 600] [--device cpu] [--json PATH]

Each measurement runs in a fresh subprocess so peak RSS is its own: one cold render, then ``--rounds`` warm
rounds of the sequential reference and the threaded pipeline back to back (see :func:`run_one`). Input:
the real photo and dance clip in ``../shared/media`` when present, else a generated SynthRunway clip
replayed with its exact joints (no MediaPipe). The clip is looped to the requested length. The model runs
with random weights of the preset for each size (speed only; weights do not change the cost).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from internet.pipeline.options import MOTION_SOURCES, TIMED_STAGES

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
PRESETS = {256: "internet-256", 512: "internet-512"}
STAGES = TIMED_STAGES  # the keys of a row's stage_s and stage_fps


def _inputs(folder: Path, frames: int) -> tuple[Path, Path, Path | None]:
    """(photo, driving video with ≥ frames frames, exact-joint file or None)."""
    from internet.video.io import ffmpeg_exe, probe_video

    photo, clip = SHARED_MEDIA / "photo_ubc_frame_silver_dress.jpg", SHARED_MEDIA / "drive_dance_indoor_yellow_top.mp4"
    joints = None
    if not (photo.is_file() and clip.is_file()):
        photo, clip, joints = _synthrunway(folder, frames)
    info = probe_video(clip)
    loops = int(np.ceil(frames / max(1, info.frame_count))) - 1
    if loops <= 0:
        return photo, clip, joints
    looped = folder / f"looped-{frames}.mp4"
    if not looped.exists():
        subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-stream_loop", str(loops), "-i",
                        str(clip), "-c", "copy", str(looped)], check=True)  # fmt: skip
    return photo, looped, joints


def _synthrunway(folder: Path, frames: int) -> tuple[Path, Path, Path]:
    import cv2

    from internet.video.io import VideoWriter
    from training.synthrunway import ClipSpec, generate_clip

    clip = generate_clip(ClipSpec(seed=10000, index=0, frames=min(frames, 120), size=256), folder)
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted((clip / "frames").glob("*.png"))]
    video = folder / "synthrunway.mp4"
    with VideoWriter(video, 30, (256, 256)) as writer:
        for image in images:
            writer.write(image)
    return clip / "frames" / "00000.png", video, clip


def _known_pose(clip: Path, frames: int):
    from internet.pipeline import KnownPose
    from internet.sources.poserig import Landmarks

    joints, masks = np.load(clip / "joints.npy"), np.load(clip / "mask.npy")
    marks = [Landmarks(joints[t % len(joints)], np.ones(len(joints[0])), masks[t % len(joints)].astype(np.float32))
             for t in range(frames)]  # fmt: skip
    return KnownPose(marks[0], marks)


OUTPUT_SETS = ("result", "all")  # result video + anchors JSON; or also the side-by-side and overlay videos


def run_one(
    motion_source: str,
    size: int,
    frames: int,
    device: str,
    folder: Path,
    outputs: str = "all",
    rounds: int = 0,
) -> dict:
    """Timed renders in this process; returns stage times, frames/s and peak RSS.

    The first render is the *cold* one (imports, MediaPipe graphs, OpenCV tables: what a fresh CLI run pays).
    With ``rounds`` > 0, that many *warm* rounds follow (what the app's server pays), each timing the
    sequential pipeline (``Animator(parallel=False)``) and the threaded one (``parallel=True``) back to
    back, so their ratio holds even where absolute times drift; the row's figures are then the warm median
    of the faster of the two (``chosen``). Stage times are the sums of the render's ``timing`` events."""
    from internet.pipeline import AnimateOptions, Animator, OutputPaths

    photo, video, clip = _inputs(folder, frames)
    model = None
    if motion_source == "model":
        import torch

        from internet import INTERNet, load_config
        from internet.speedups.inference_copy import inference_copy
        from internet.speedups.memory import retain_freed_memory

        retain_freed_memory()  # as the CLI's model path
        torch.manual_seed(0)
        model = inference_copy(INTERNet(load_config(PRESETS.get(size, "tiny"))).to(device).eval())  # as the CLI
    from internet.video.io import probe_video

    fps = probe_video(video).fps
    options = AnimateOptions(
        motion_source=motion_source, size=size, max_seconds=frames / fps, centre_crop=clip is not None
    )
    out = folder / f"{motion_source}-{size}-{frames}-{outputs}"
    out.mkdir(exist_ok=True)
    paths = OutputPaths(out / "result.mp4", None, None, out / "anchors.json")
    if outputs == "all":
        paths = OutputPaths(out / "result.mp4", out / "sbs.mp4", out / "overlays.mp4", out / "anchors.json")
    known = _known_pose(clip, frames + 8) if clip is not None else None

    def render(animator) -> dict:
        times = dict.fromkeys(STAGES, 0.0)

        def timing(spent) -> None:
            times[spent.stage] += spent.seconds

        start, cpu = time.perf_counter(), _cpu_seconds()
        result = animator.animate(photo, video, options, paths, timing=timing)
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        return {
            "frames": result.frame_count, "wall_s": round(wall, 3),
            "end_to_end_fps": round(result.frame_count / wall, 2), "cpu_s": round(cpu, 3),
            "cpu_ms_per_frame": round(1000 * cpu / result.frame_count, 1),
            "stage_fps": {k: (round(result.frame_count / v, 1) if v > 0 else None) for k, v in times.items()},
            "stage_s": {k: round(v, 3) for k, v in times.items()},
        }  # fmt: skip

    threaded, sequential = (Animator(model, device, parallel=p, poses=known) for p in (True, False))
    default = "threaded" if Animator(model, device).parallel else "sequential"
    cold = render(threaded if default == "threaded" else sequential)
    row = {"motion": motion_source, "size": size, "outputs": outputs, "default": default}
    row |= {"cold_fps": cold["end_to_end_fps"]} | cold
    if rounds > 0:
        row |= _warm_rounds(lambda: render(sequential), lambda: render(threaded), rounds)
    row["load_average"] = [round(x, 2) for x in os.getloadavg()]
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def _warm_rounds(sequential, threaded, rounds: int) -> dict:
    """``rounds`` of the two renders back to back: the median row of the faster and both series."""
    runs: dict[str, list[dict]] = {"sequential": [], "threaded": []}
    for _ in range(rounds):
        runs["sequential"].append(sequential())
        runs["threaded"].append(threaded())
    fps = {name: [r["end_to_end_fps"] for r in rows] for name, rows in runs.items()}
    chosen = max(fps, key=lambda name: statistics.median(fps[name]))
    median = sorted(runs[chosen], key=lambda r: r["end_to_end_fps"])[len(runs[chosen]) // 2]
    return median | {
        "chosen": chosen,
        "sequential_fps": fps["sequential"],
        "threaded_fps": fps["threaded"],
        "threaded_vs_sequential": round(
            statistics.median(t / s for t, s in zip(fps["threaded"], fps["sequential"])), 3),
    }  # fmt: skip


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (ffmpeg)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(
    motion_source: str, size: int, frames: int, device: str, folder: Path, outputs: str = "all", rounds: int = 0
) -> dict:
    """:func:`run_one` in a fresh process (so its peak RSS is its own); ``folder`` caches the looped inputs."""
    return _child(motion_source, size, frames, device, folder, outputs, rounds)


def _child(
    motion_source: str, size: int, frames: int, device: str, folder: Path, outputs: str = "all", rounds: int = 0
):
    cmd = [sys.executable, "-m", "benchmarks.pipeline", "--child", motion_source, str(size), str(frames),
           "--device", device, "--folder", str(folder), "--outputs", outputs, "--rounds", str(rounds)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"motion": motion_source, "size": size, "frames": frames, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per speed run")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--motions", nargs="+", default=list(MOTION_SOURCES), choices=MOTION_SOURCES)
    parser.add_argument(
        "--rss",
        type=int,
        nargs="*",
        default=[60, 600],
        help="frame counts for the peak-memory comparison (pose rig, largest size); none to skip",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--rounds", type=int, default=3, help="warm rounds (reference and threaded) per speed run")
    parser.add_argument("--outputs", choices=OUTPUT_SETS, nargs="+", default=list(OUTPUT_SETS),
                        help="result: result video + anchors JSON; all: also side-by-side and overlays")  # fmt: skip
    parser.add_argument("--child", nargs=3, metavar=("MOTION", "SIZE", "FRAMES"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        motion_source, size, frames = args.child[0], int(args.child[1]), int(args.child[2])
        print(json.dumps(run_one(motion_source, size, frames, args.device, args.folder, args.outputs[0], args.rounds)))
        return 0

    from internet.speedups.memory import enable_huge_pages

    enable_huge_pages()  # as the app and CLI run (the children inherit it; it only concerns torch's tensors)
    results: dict = {"speed": [], "memory": []}
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        folder = Path(tmp)
        for motion_source in args.motions:
            for size in args.sizes:
                for outputs in args.outputs:
                    row = _child(motion_source, size, args.frames, args.device, folder, outputs, args.rounds)
                    results["speed"].append(row)
                    print_speed(row)
        for frames in args.rss:
            row = _child("pose-rig", max(args.sizes), frames, args.device, folder)
            results["memory"].append(row)
            print(f"peak RSS, pose rig {max(args.sizes)}², {row.get('frames')} frames: {row.get('peak_rss_mb')} MB")
    if len(results["memory"]) >= 2 and all("peak_rss_mb" in r for r in results["memory"]):
        first, last = results["memory"][0], results["memory"][-1]
        ratio = last["peak_rss_mb"] / first["peak_rss_mb"]
        results["rss_ratio"] = round(ratio, 3)
        print(f"RSS {last['frames']} / {first['frames']} frames = {ratio:.2f} (target ≤ 1.2)")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_speed(row: dict) -> None:
    if "error" in row:
        print(f"{row['motion']:8s} {row['size']}²: failed: {row['error']}")
        return
    stages = "  ".join(f"{k} {v if v is not None else '-'}" for k, v in row["stage_fps"].items())
    warm = ""
    if "chosen" in row:
        warm = (f" warm {row['chosen']} (median; sequential {row['sequential_fps']}, threaded "
                f"{row['threaded_fps']}: x{row['threaded_vs_sequential']}), cold {row['cold_fps']} "
                f"({row['default']}, the default here)")  # fmt: skip
    print(f"{row['motion']:8s} {row['size']}² {row.get('outputs', 'all')} outputs: {row['end_to_end_fps']:6.2f} fps "
          f"end to end{warm} ({row.get('cpu_ms_per_frame')} CPU ms/frame)  |  stage fps: {stages}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
