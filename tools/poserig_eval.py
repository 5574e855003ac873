"""The pose rig's quality figure measured as a user runs it, and pass 1's tracking error.

For each driving clip, each ``--max-seconds`` and each option set, this runs the CLI exactly as a user would
(``python -m internet.animate PHOTO CLIP -o out.mp4 --max-seconds S [options]``, 512² by default), finds
the pose on the output again with MediaPipe (a fresh tracker) and correlates each limb's angle with the driver's
(:func:`~internet.sources.poserig.posemetrics.centred_limb_angle_correlation`: 8 limbs, angles centred on their
median, the first ``--frames`` frames). The driver's angles come from MediaPipe on the original frames, and,
for SynthRunway drivers, from their exact joints as well. The driving clip itself (resized to the output's
size) is scored the same way: the figure's ceiling.

SynthRunway drivers also give the error of pass 1 (MediaPipe in the pipeline, two trackers side by side or
one) against their exact joints, frame by frame: mean joint distance in torso lengths.

Contact sheets (driver over output, 8 frames) go to ``--out``; the media's terms forbid redistribution, so
keep that folder out of the repository (the default is under /tmp).

    python tools/poserig_eval.py [--media ../shared/media] [--seconds 3 4.5 9.4] [--frames 72]
        [--variants default absolute best-frame first-frame] [--synthrunway runs/poserig/sr] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from internet.pipeline import AnimateOptions, Animator  # noqa: E402
from internet.sources.poserig.posemetrics import centred_limb_angle_correlation  # noqa: E402
from internet.sources.poserig.quality import track_landmarks  # noqa: E402
from internet.sources.poserig.retarget import torso_length  # noqa: E402
from internet.video.framing import person_box, square_around  # noqa: E402
from internet.video.io import VideoReader, probe_video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MIRROR = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11]  # JOINT_NAMES with left and right exchanged
PHOTO = "photo_ubc_frame_silver_dress.jpg"
CLIP = "drive_dance_indoor_yellow_top.mp4"
VARIANTS = {  # the CLI options of each named variant
    "default": [],
    "absolute": ["--absolute"],
    "best-frame": ["--best-frame"],
    "first-frame": ["--reference", "first"],
}


def read_video(path: Path, max_seconds: float | None = None, size: int | None = None) -> tuple[list, float]:
    info = probe_video(path)
    frames = []
    with VideoReader(info, max_seconds=max_seconds) as reader:
        for frame in reader:
            frames.append(frame if size is None else _square(frame, size))
    return frames, info.fps


def _square(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    padded = cv2.copyMakeBorder(frame, top, side - h - top, left, side - w - left, cv2.BORDER_REPLICATE)
    return cv2.resize(padded, (size, size), interpolation=cv2.INTER_AREA)


def score(driver_marks: list, output_marks: list) -> dict:
    """``corr``: all 8 limbs in every frame, whatever MediaPipe's visibility (a limb hidden or smeared in the
    output counts against it); ``corr_visible``: only limbs seen (visibility >= 0.5) in both."""
    n = len(output_marks)
    return {
        "corr": centred_limb_angle_correlation(driver_marks[:n], output_marks, min_visibility=0.0),
        "corr_visible": centred_limb_angle_correlation(driver_marks[:n], output_marks, min_visibility=0.5),
    }


def person_square(frame: np.ndarray, marks, size: int) -> np.ndarray:
    """The driving frame cropped to a square around its person (as the pipeline frames it), resized."""
    if marks is None:
        return _square(frame, size)
    box = person_box(marks.points, marks.visibility, marks.mask)
    if box is None:
        return _square(frame, size)
    side = max(box.width, box.height) * 1.2
    return square_around(*box.centre, side).apply(frame, size)


def run_cli(photo: Path, clip: Path, out: Path, seconds: float, extra: list[str], size: int) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "internet.animate", str(photo), str(clip), "-o", str(out),
           "--max-seconds", f"{seconds:g}", *extra]  # fmt: skip
    if size != 512:
        cmd += ["--size", str(size)]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {run.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - t0, run.stdout.strip().splitlines()[-1]


def save_sheet(driver: list[np.ndarray], output: list[np.ndarray], path: Path, tile: int = 192) -> None:
    picks = np.linspace(0, min(len(driver), len(output)) - 1, 8).round().astype(int)
    rows = [[cv2.resize(seq[i], (tile, tile), interpolation=cv2.INTER_AREA) for i in picks] for seq in (driver, output)]
    sheet = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def score_clip(name, photo, clip, exact, args, table) -> None:
    """CLI runs on one driving clip: every --seconds and variant; rows appended to ``table``."""
    driver, fps = read_video(clip)
    driver_marks = track_landmarks(driver)
    resized = track_landmarks([person_square(f, m, args.size) for f, m in zip(driver[: args.frames], driver_marks)])
    ceiling = score(driver_marks, resized)
    print(f"{name}: {len(driver)} frames at {fps:g} fps; the driver itself, cropped to its person and resized: "
          f"corr {ceiling['corr']:.3f} (visible limbs {ceiling['corr_visible']:.3f})", flush=True)  # fmt: skip
    table.append({"clip": name, "variant": "driver (resized)", "seconds": None, **ceiling})
    for seconds in args.seconds:
        for variant in args.variants:
            out = args.out / f"{name}-{variant}-{seconds:g}s.mp4"
            wall, message = run_cli(photo, clip, out, seconds, VARIANTS[variant], args.size)
            output, _ = read_video(out)
            n = min(args.frames, len(output))
            marks = track_landmarks(output[:n])
            row = {"clip": name, "variant": variant, "seconds": seconds, "frames": len(output), "scored": n,
                   **score(driver_marks, marks), "wall_s": round(wall, 1), "message": message}  # fmt: skip
            if exact is not None:
                row["corr_exact"] = centred_limb_angle_correlation(list(exact[:n]), marks, min_visibility=0.0)
            table.append(row)
            save_sheet(driver[:n], output[:n], args.out / f"{name}-{variant}-{seconds:g}s.png")
            extra = f"  vs exact joints {row['corr_exact']:.3f}" if exact is not None else ""
            print(f"  --max-seconds {seconds:<4g} {variant:<12} corr {row['corr']:.3f} (visible limbs "
                  f"{row['corr_visible']:.3f}){extra}  ({len(output)} frames, {wall:.1f} s)", flush=True)  # fmt: skip


def tracking_error(photo: Path, clip: Path, exact: np.ndarray, seconds: float) -> dict:
    """Pass 1's joints against the exact ones, per frame (mean joint distance / torso length), with the
    two-tracker path on and off; a frame whose detection has left and right swapped counts as the better of the
    two readings."""
    out = {}
    for parallel in (True, False):
        result = Animator(None, parallel=parallel).animate(photo, clip, AnimateOptions(size=64, max_seconds=seconds))
        errors = []
        for joints, truth in zip(result.driving_joints, exact):
            if joints is None:
                errors.append(float("nan"))
                continue
            swapped = joints[MIRROR]  # MediaPipe may take the synthetic figure's left for its right
            errors.append(min(float(np.linalg.norm(j - truth, axis=1).mean()) for j in (joints, swapped)))
            errors[-1] /= torso_length(truth)
        out["two trackers" if parallel else "one tracker"] = errors
    return out


def synthrunway_clip(folder: Path, out: Path) -> tuple[Path, np.ndarray]:
    """A SynthRunway clip folder as an MP4 (crf 0) and its exact joints."""
    video = out / f"{folder.name}.mp4"
    if not video.is_file():
        frames = [cv2.imread(str(p)) for p in sorted((folder / "frames").glob("*.png"))]
        fps = json.loads((folder / "meta.json").read_text()).get("fps", 30)
        h, w = frames[0].shape[:2]
        from internet.video.io import ffmpeg_exe

        cmd = [ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264", "-crf", "0", "-pix_fmt", "yuv444p",
               str(video)]  # fmt: skip
        subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)
    return video, np.load(folder / "joints.npy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", type=Path, default=ROOT.parent / "shared" / "media")
    parser.add_argument("--photo", type=Path, default=None, help="source photo (default: the shared one)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[3.0, 4.5, 9.4])
    parser.add_argument("--frames", type=int, default=72, help="score the first this many frames")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["default"])
    parser.add_argument("--synthrunway", type=Path, nargs="*", default=[], help="SynthRunway clip folders (drivers)")
    parser.add_argument("--synthrunway-seconds", type=float, nargs="+", default=[1.6, 3.2])
    parser.add_argument("--no-shared-clip", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("/tmp/poserig-eval"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("GLOG_minloglevel", "2")
    args.out.mkdir(parents=True, exist_ok=True)
    photo = args.photo or args.media / PHOTO
    table: list[dict] = []
    tracking: dict[str, dict] = {}
    if not args.no_shared_clip:
        score_clip("shared", photo, args.media / CLIP, None, args, table)
    shared_seconds = args.seconds
    for folder in args.synthrunway:
        video, exact = synthrunway_clip(folder, args.out)
        args.seconds = args.synthrunway_seconds
        score_clip(folder.name, photo, video, exact, args, table)
        args.seconds = shared_seconds
        errors = tracking_error(photo, video, exact, max(args.synthrunway_seconds))
        tracking[folder.name] = errors
        summary = {k: np.round(np.nanpercentile(v, [50, 90, 100]), 3).tolist() for k, v in errors.items()}
        print(f"  pass 1 joint error vs exact joints (torso lengths; median, p90, max): {summary}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": table, "pass1_joint_error": tracking}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
