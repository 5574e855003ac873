"""SynthRunway: synthetic runway clips with exact optical flow, visibility, masks and joints.

    python -m training.synthrunway --out DIR --clips N --frames F --size S --seed K [--workers W]

writes N clips ``DIR/s{K:05d}_c{i:05d}/`` for i = 0..N-1, each a pure function of (seed K, clip index i):

    frames/00000.png ...  RGB, S x S
    flow.npy     float16 (F-1, S, S, 2)  backward flow in pixels: frame_t(x) ≈ frame_{t-1}(x + flow[t-1](x))
    visible.npy  bool    (F-1, S, S)     pixel x of frame t is visible in frame t-1 (not disoccluded)
    mask.npy     bool    (F, S, S)       person mask
    joints.npy   float32 (F, J, 2)       pixels, ``internet.skeleton.JOINT_NAMES`` order
    meta.json    seed, index, split, size, frames, fps, joint names, outfit

Split convention: clips with seed < ``TEST_SEED_START`` (10000) are training clips, clips with a seed
>= 10000 are test clips. The standard sets are ``--seed 0`` (train) and ``--seed 10000`` (test).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from internet.errors import InputError
from internet.skeleton import JOINT_NAMES
from training.synthrunway.figure import sample_scene
from training.synthrunway.render import backward_flow, person_mask, render_frame

FORMAT = "synthrunway-1"
TEST_SEED_START = 10000
DEFAULT_FPS = 30.0


def split_of(seed: int) -> str:
    """The split a clip belongs to, from its seed."""
    return "test" if seed >= TEST_SEED_START else "train"


def clip_name(seed: int, index: int) -> str:
    return f"s{seed:05d}_c{index:05d}"


@dataclass(frozen=True)
class ClipSpec:
    seed: int
    index: int
    frames: int
    size: int
    fps: float = DEFAULT_FPS


def generate_clip(spec: ClipSpec, out_dir: Path) -> Path:
    """Render one clip and its ground truth into ``out_dir / clip_name(seed, index)``; returns that folder."""
    if spec.frames < 2:
        raise InputError(f"A clip needs at least 2 frames, got {spec.frames}")
    if spec.fps <= 0:
        raise InputError(f"The frame rate must be positive, got {spec.fps}")
    if spec.size < 32:
        raise InputError(f"The frame size must be at least 32 pixels, got {spec.size}")
    rng = np.random.default_rng([spec.seed, spec.index])
    scene = sample_scene(rng, spec.frames, spec.fps, spec.size)
    folder = Path(out_dir) / clip_name(spec.seed, spec.index)
    (folder / "frames").mkdir(parents=True, exist_ok=True)

    n, s = spec.frames, spec.size
    flow = np.lib.format.open_memmap(folder / "flow.npy", mode="w+", dtype=np.float16, shape=(n - 1, s, s, 2))
    visible = np.zeros((n - 1, s, s), bool)
    mask = np.zeros((n, s, s), bool)
    joints = np.zeros((n, len(JOINT_NAMES), 2), np.float32)
    previous = None
    for t in range(n):
        layout, joints[t] = scene.layout(t)
        frame = render_frame(scene.parts, layout, s)
        cv2.imwrite(str(folder / "frames" / f"{t:05d}.png"), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        mask[t] = person_mask(scene.parts, frame.owner)
        if previous is not None:
            truth = backward_flow(scene.parts, previous, layout, frame.owner)
            flow[t - 1] = truth.flow
            visible[t - 1] = truth.visible
        previous = layout
    flow.flush()
    del flow
    np.save(folder / "visible.npy", visible)
    np.save(folder / "mask.npy", mask)
    np.save(folder / "joints.npy", joints)
    outfit = scene.outfit
    meta = {
        "format": FORMAT,
        "seed": spec.seed,
        "index": spec.index,
        "split": split_of(spec.seed),
        "size": s,
        "num_frames": n,
        "fps": spec.fps,
        "joint_names": list(JOINT_NAMES),
        "outfit": {
            "kind": outfit.kind,
            "top_pattern": outfit.top.pattern,
            "bottom_pattern": outfit.bottom.pattern,
            "sleeve": round(outfit.sleeve, 3),
        },
        "flow": "backward: frame_t(x) = frame_{t-1}(x + flow[t-1](x)), pixels, x then y",
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return folder


def _generate(args: tuple[ClipSpec, Path]) -> Path:
    cv2.setNumThreads(1)
    return generate_clip(*args)


def generate(
    out_dir: Path,
    clips: int,
    frames: int,
    size: int,
    seed: int,
    workers: int = 1,
    progress: bool = True,
    fps: float = DEFAULT_FPS,
) -> list[Path]:
    """Render clips (seed, 0..clips-1) into ``out_dir``, in ``workers`` processes."""
    specs = [(ClipSpec(seed, i, frames, size, fps), Path(out_dir)) for i in range(clips)]
    bar = tqdm(total=clips * frames, unit="frame", disable=not progress, desc="SynthRunway")
    results: list[Path] = []
    if workers <= 1:
        cv2.setNumThreads(1)
        for spec in specs:
            results.append(generate_clip(*spec))
            bar.update(frames)
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers) as pool:
            for path in pool.imap(_generate, specs):
                results.append(path)
                bar.update(frames)
    bar.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--clips", type=int, default=10, help="number of clips")
    parser.add_argument("--frames", type=int, default=120, help="frames per clip")
    parser.add_argument("--size", type=int, default=256, help="frame size in pixels (square)")
    parser.add_argument(
        "--seed", type=int, default=0, help=f"clip seed; seeds >= {TEST_SEED_START} are test clips"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes")
    parser.add_argument(
        "--fps", type=float, default=DEFAULT_FPS, help="frame rate (motion per frame scales with 1/fps)"
    )
    args = parser.parse_args(argv)
    try:
        start = time.perf_counter()
        generate(args.out, args.clips, args.frames, args.size, args.seed, args.workers, fps=args.fps)
        elapsed = time.perf_counter() - start
        total = args.clips * args.frames
        print(f"{total} frames in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.1f} frames/s) -> {args.out}")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

