"""Limb-angle correlation of the pose rig on the shared real photo + dance clip (issue 7's quality figure).

Renders the shared photo driven by the first seconds of the shared clip (centre-square crops around the
person, resized), re-detects the pose on the output with MediaPipe and prints the limb-angle correlation
with the driver for: the driving clip itself (resized), a frozen photo, and the rig. Also times the rig's
rendering at other sizes and writes contact sheets (driving over output, and a zoom) to look at the seams.
The media's terms forbid redistribution: the sheets go to /tmp, never into the repository.

    python tools/poserig_eval.py [--media ../shared/media] [--seconds 4] [--size 256] [--out /tmp/poserig]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from internet.poserig import MediaPipeProvider, PoseRig, RigOptions  # noqa: E402
from internet.poserig.evaluate import evaluate_rig, read_frames, square_crop  # noqa: E402

PHOTO = "photo_ubc_frame_silver_dress.jpg"
CLIP = "drive_dance_indoor_yellow_top.mp4"


def time_render(photo: np.ndarray, driving: list[np.ndarray], size: int, fps: float) -> tuple[float, float]:
    """(source setup ms, render ms/frame) of the rig at ``size`` px, driven by MediaPipe landmarks."""
    frames = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in driving]
    with MediaPipeProvider(static_image_mode=True) as provider:
        source = cv2.resize(square_crop(photo), (size, size), interpolation=cv2.INTER_AREA)
        source_marks = provider.detect(source)
    with MediaPipeProvider(static_image_mode=False) as provider:
        marks = [provider.detect(f) for f in frames]
    t0 = time.perf_counter()
    rig = PoseRig(source, source_marks, RigOptions(fps=fps))
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    for m in marks:
        rig.render(m, "keep")
    return 1000 * setup, 1000 * (time.perf_counter() - t0) / len(marks)


def save_sheet(rows: list[list[np.ndarray]], path: Path) -> None:
    sheet = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--media", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "media"
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--mode", choices=["absolute", "relative"], default="absolute")
    parser.add_argument("--out", type=Path, default=Path("/tmp/poserig"))
    parser.add_argument("--timing-sizes", type=int, nargs="*", default=[512])
    args = parser.parse_args()

    photo = cv2.cvtColor(cv2.imread(str(args.media / PHOTO)), cv2.COLOR_BGR2RGB)
    clip, fps = read_frames(str(args.media / CLIP), args.seconds)
    result = evaluate_rig(photo, clip, args.size, fps, RigOptions(mode=args.mode, fps=fps))
    print(f"limb-angle correlation with the driver ({len(clip)} frames, {args.size}px, mode {args.mode}):")
    print(f"  driver (resized)  {result.driver:+.3f}")
    print(f"  frozen photo      {result.frozen:+.3f}")
    print(f"  pose rig          {result.rig:+.3f}")
    print(f"render: {args.size}px {result.render_ms:.1f} ms/frame")
    for size in args.timing_sizes:
        setup, per_frame = time_render(photo, result.driving, size, fps)
        print(f"render: {size}px {per_frame:.1f} ms/frame (source setup {setup:.0f} ms)")

    picks = np.linspace(0, len(clip) - 1, 8).round().astype(int)
    s = args.size
    save_sheet(
        [[result.driving[i] for i in picks], [result.outputs[i] for i in picks]],
        args.out / "poserig_sheet.png",
    )
    zoom = [
        cv2.resize(
            result.outputs[i][s // 8 : s // 8 + s // 2, s // 4 : 3 * s // 4],
            (s, s),
            interpolation=cv2.INTER_NEAREST,
        )
        for i in picks
    ]
    save_sheet([zoom[:4], zoom[4:]], args.out / "poserig_zoom.png")
    print(f"contact sheets: {args.out / 'poserig_sheet.png'}, {args.out / 'poserig_zoom.png'}")


if __name__ == "__main__":
    main()
