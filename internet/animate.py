"""Command line: animate a photo with a driving video.

    python -m internet.animate SOURCE DRIVING -o OUT.mp4 [--motion pose-rig|model] [--checkpoint DIR]
        [--size 256|512] [--relative|--absolute] [--reference auto|best|first] [--best-frame] [--fps F]
        [--max-seconds S]
        [--background keep|white|green] [--side-by-side PATH] [--overlays PATH] [--anchors-json PATH]
        [--preview] [--center-crop]

Bad input gives one line on stderr and exit code 2; Ctrl-C leaves no partial files (exit code 130).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from internet.pipeline.options import MOTION_SOURCES, PREVIEW_SECONDS, PREVIEW_SIZE, REFERENCES
from internet.sources.base import BACKGROUNDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m internet.animate",
        description="Animate the person in SOURCE (a photo) with the motion of DRIVING (a video).",
    )
    parser.add_argument("source", type=Path, help="photo of a person (JPEG, PNG, ...)")
    parser.add_argument("driving", type=Path, help="driving video (MP4, MOV, ...)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="result video (H.264 MP4)")
    parser.add_argument(
        "--motion",
        dest="motion_source",
        choices=MOTION_SOURCES,
        default="pose-rig",
        help="motion source: training-free pose rig (default) or an INTERNet checkpoint",
    )
    parser.add_argument(
        "--checkpoint", default=None, help="INTERNet checkpoint folder for --motion model (default: the committed one)"
    )
    parser.add_argument("--size", type=_even_size, default=512, help="output side in pixels, 256 or 512 (pose rig)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--relative",
        dest="relative",
        action="store_true",
        default=True,
        help="relative motion: follow the driver's changes from the reference frame (default)",
    )
    mode.add_argument("--absolute", dest="relative", action="store_false", help="absolute motion")
    parser.add_argument(
        "--reference",
        choices=REFERENCES,
        default="auto",
        help="relative motion's reference: auto (default: the driving frame closest to the photo's pose, each "
        "bone's offset from it kept only where small), best (that frame, plain relative), first (the first frame)",
    )
    parser.add_argument("--best-frame", action="store_true", help="same as --reference best")
    parser.add_argument("--fps", type=float, default=None, help="output frame rate (default: the driving video's)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="use at most this many seconds of the driving video (default 60)",
    )
    parser.add_argument(
        "--background",
        choices=BACKGROUNDS,
        default="keep",
        help="pose rig: keep the photo's background or replace it",
    )
    parser.add_argument("--side-by-side", type=Path, default=None, help="also write source | driving | result")
    parser.add_argument(
        "--overlays",
        type=Path,
        default=None,
        help="also write the diagnostic panel video (anchors, confidence, weights, flow, warp error)",
    )
    parser.add_argument("--anchors-json", type=Path, default=None, help="also write per-frame anchors as JSON")
    parser.add_argument(
        "--preview", action="store_true", help=f"fast look: the first {PREVIEW_SECONDS:g} s at {PREVIEW_SIZE}²"
    )
    parser.add_argument(
        "--center-crop",
        action="store_true",
        help="frame with a centre crop instead of around the person (model motion)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for --motion model (cpu, cuda, ...)")
    return parser  # fmt: skip


def _even_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 32 or value % 2:
        raise argparse.ArgumentTypeError(f"the size must be an even number of pixels ≥ 32, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet MediaPipe's C++ logging
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from tqdm import tqdm

    from internet.speedups.memory import enable_huge_pages, retain_freed_memory

    enable_huge_pages()  # before torch's first tensor (the model path)
    if args.motion_source == "model":  # its 512² activations; the pose rig would only keep ~50 MB more resident
        retain_freed_memory()

    from internet.errors import InputError
    from internet.pipeline import AnimateOptions, Animator, Cancelled, OutputPaths, Progress

    bars: dict[str, tqdm] = {}

    def progress(p: Progress) -> None:
        bar = bars.get(p.stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[p.stage] = tqdm(total=p.total, desc=p.stage, unit="frame", file=sys.stderr, leave=False)
        bar.total = max(bar.total or 0, p.total)
        bar.update(p.done - bar.n)

    try:
        outputs = OutputPaths(args.output, args.side_by_side, args.overlays, args.anchors_json)
        _check_outputs(outputs, args)
        options = AnimateOptions(
            motion_source=args.motion_source, size=args.size, relative=args.relative, best_frame=args.best_frame,
            reference=args.reference, fps=args.fps, max_seconds=args.max_seconds, background=args.background,
            centre_crop=args.center_crop,
        )  # fmt: skip
        if args.preview:
            options = options.preview()
        checkpoint = (args.checkpoint or "default") if args.motion_source == "model" else None
        animator = Animator.from_pretrained(checkpoint, device=args.device)
        result = animator.animate(args.source, args.driving, options, outputs, progress=progress)
    except InputError as error:
        _close(bars)  # clear the progress bar first, or the message is glued to the end of its line
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Cancelled):
        _close(bars)
        print("interrupted: no output written", file=sys.stderr)
        return 130
    finally:
        _close(bars)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    audio = "with audio" if result.has_audio else "no audio"
    print(f"wrote {args.output} ({result.frame_count} frames, {result.size}², {result.fps:g} fps, {audio})")
    for path in (outputs.side_by_side, outputs.overlays, outputs.anchors_json):
        if path is not None:
            print(f"wrote {path}")
    return 0


def _close(bars: dict) -> None:
    """Close (and, with leave=False, erase) every progress bar; safe to call twice."""
    for bar in bars.values():
        bar.close()


def _check_outputs(outputs, args: argparse.Namespace) -> None:
    from internet.errors import InputError

    paths = outputs.as_list()
    inputs = {args.source.resolve(), args.driving.resolve()}
    for path in paths:
        if not path.parent.is_dir():
            raise InputError(f"Output folder does not exist: {path.parent}")
        if path.resolve() in inputs:
            raise InputError(f"Refusing to overwrite the input {path}")
    if len({p.resolve() for p in paths}) != len(paths):
        raise InputError("Two outputs have the same path")


if __name__ == "__main__":
    sys.exit(main())
