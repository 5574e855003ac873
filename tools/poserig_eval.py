"""Limb-angle correlation of the pose rig on the shared real photo + dance clip (issue 7's quality figure).

Renders the shared photo driven by the first seconds of the shared clip at 256 px, re-detects the pose on
the output with MediaPipe, and prints the limb-angle correlation with the driver for: the driving clip
itself (resized), a frozen photo, and the rig. Writes a contact sheet to look at the part seams.

    python tools/poserig_eval.py [--media ../shared/media] [--seconds 4] [--size 256] [--out /tmp/poserig]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from internet.poserig import Landmarks, MediaPipeProvider, PoseRig, RigOptions, limb_angle_correlation

PHOTO = "photo_ubc_frame_silver_dress.jpg"
CLIP = "drive_dance_indoor_yellow_top.mp4"


def square(image: np.ndarray, centre_x: float | None = None) -> np.ndarray:
    """The largest square around a centre column (default the middle), padding with edge pixels."""
    h, w = image.shape[:2]
    side = max(h, w)
    cx = w / 2 if centre_x is None else centre_x
    left = int(round(cx - side / 2))
    top = (h - side) // 2
    pad = [max(0, -top), max(0, top + side - h), max(0, -left), max(0, left + side - w)]
    padded = cv2.copyMakeBorder(image, *pad, cv2.BORDER_REPLICATE)
    return padded[top + pad[0]:top + pad[0] + side, left + pad[2]:left + pad[2] + side]


def read_clip(path: Path, seconds: float) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while len(frames) < int(round(seconds * fps)):
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames, fps


def detect_all(frames: list[np.ndarray]) -> list[Landmarks | None]:
    with MediaPipeProvider(static_image_mode=False) as provider:
        return [provider.detect(f) for f in frames]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def scaled(lm: Landmarks | None, factor: float) -> Landmarks | None:
    return None if lm is None else Landmarks(lm.points * factor, lm.visibility, None)


def contact_sheet(rows: list[list[np.ndarray]], path: Path) -> None:
    sheet = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--media", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "media")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--mode", choices=["absolute", "relative"], default="absolute")
    parser.add_argument("--out", type=Path, default=Path("/tmp/poserig"))
    parser.add_argument("--timing-size", type=int, nargs="*", default=[256, 512])
    args = parser.parse_args()
    size = args.size

    photo = cv2.cvtColor(cv2.imread(str(args.media / PHOTO)), cv2.COLOR_BGR2RGB)
    clip, fps = read_clip(args.media / CLIP, args.seconds)
    with MediaPipeProvider(static_image_mode=True) as provider:
        first = provider.detect(clip[0])
    centre_x = None if first is None else float(first.points[[7, 8], 0].mean())
    driving = [resize(square(f, centre_x), size) for f in clip]
    source_big = square(photo)

    driver_marks = detect_all(clip)  # the metric's reference: the driver in the original frames (angles only)
    rig_input = detect_all(driving)  # what the rig sees (as the pipeline would)

    def rig_frames(s: int) -> tuple[list[np.ndarray], float]:
        src = resize(source_big, s)
        with MediaPipeProvider(static_image_mode=True) as provider:
            src_lm = provider.detect(src)
        if src_lm is None:
            raise SystemExit("no person found in the photo")
        t0 = time.perf_counter()
        rig = PoseRig(src, src_lm, RigOptions(mode=args.mode, fps=fps))
        setup = time.perf_counter() - t0
        outs, spent = [], 0.0
        for lm in rig_input:
            t0 = time.perf_counter()
            out, _ = rig.render(scaled(lm, s / size), "keep")
            spent += time.perf_counter() - t0
            outs.append(out)
        print(f"  {s}px: source setup {setup * 1000:.0f} ms, render {spent / len(outs) * 1000:.1f} ms/frame")
        return outs, spent / len(outs)

    print("render timing (this machine, OMP_NUM_THREADS as set):")
    outputs = None
    for s in sorted(set(args.timing_size) | {size}):
        frames, _ = rig_frames(s)
        if s == size:
            outputs = frames
    frozen = [resize(source_big, size)] * len(driving)

    reference = driver_marks
    scores = {
        "driver (resized)": limb_angle_correlation(reference, detect_all(driving)),
        "frozen photo": limb_angle_correlation(reference, detect_all(frozen)),
        "pose rig": limb_angle_correlation(reference, detect_all(outputs)),
    }
    print(f"limb-angle correlation with the driver ({len(driving)} frames, {size}px, mode {args.mode}):")
    for name, value in scores.items():
        print(f"  {name:18s} {value:+.3f}")

    picks = np.linspace(0, len(driving) - 1, 8).round().astype(int)
    contact_sheet([[driving[i] for i in picks], [outputs[i] for i in picks]], args.out / "poserig_sheet.png")
    zoom = [cv2.resize(outputs[i][size // 8: size // 8 + size // 2, size // 4: 3 * size // 4], (size, size),
                       interpolation=cv2.INTER_NEAREST) for i in picks]
    contact_sheet([zoom[:4], zoom[4:]], args.out / "poserig_zoom.png")
    print(f"contact sheets: {args.out / 'poserig_sheet.png'}, {args.out / 'poserig_zoom.png'}")


if __name__ == "__main__":
    main()
