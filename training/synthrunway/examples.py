"""Write the app's example media from SynthRunway test-split clips: H.264 MP4s, first frames, source photos.

    python -m training.synthrunway.examples --out assets/examples

Driving clips are (seed 10000, index i) for ``--clips``; source photos are the first frame of other clips
(``--photos``) rendered at ``--photo-size``, so no photo shows a person from a driving clip.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import cv2
import imageio_ffmpeg

from training.data import load_clip
from training.synthrunway import TEST_SEED_START, ClipSpec, generate_clip


def encode_mp4(frames_dir: Path, fps: float, out: Path, crf: int = 20) -> None:
    """Encode ``frames_dir/%05d.png`` as H.264 (yuv420p) with the ffmpeg binary bundled by imageio-ffmpeg."""
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-framerate", f"{fps:g}",
        "-i", str(frames_dir / "%05d.png"), "-c:v", "libx264", "-preset", "slow", "-crf", str(crf),
        "-pix_fmt", "yuv420p", "-threads", "1", "-movflags", "+faststart", str(out),
    ]  # fmt: skip
    subprocess.run(command, check=True)


def write_examples(
    out: Path, seed: int, clips: list[int], photos: list[int], frames: int, size: int, photo_size: int
) -> list[Path]:
    """Render the clips and photos into ``out``; returns the written files."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        for index in clips:
            folder = generate_clip(ClipSpec(seed, index, frames, size), Path(scratch))
            clip = load_clip(folder)
            stem = out / f"runway_{seed:05d}_{index:02d}"
            encode_mp4(folder / "frames", clip.fps, stem.with_suffix(".mp4"))
            cv2.imwrite(str(stem.with_suffix(".png")), cv2.cvtColor(clip.frame(0), cv2.COLOR_RGB2BGR))
            written += [stem.with_suffix(".mp4"), stem.with_suffix(".png")]
        for index in photos:
            folder = generate_clip(ClipSpec(seed, index, 2, photo_size), Path(scratch))
            photo = out / f"source_{seed:05d}_{index:02d}.png"
            cv2.imwrite(str(photo), cv2.cvtColor(load_clip(folder).frame(0), cv2.COLOR_RGB2BGR))
            written.append(photo)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write SynthRunway example media for the app.")
    parser.add_argument("--out", type=Path, default=Path("assets/examples"))
    parser.add_argument("--seed", type=int, default=TEST_SEED_START)
    parser.add_argument("--clips", type=int, nargs="+", default=[0, 2, 5, 7])
    parser.add_argument("--photos", type=int, nargs="+", default=[9, 4])
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--photo-size", type=int, default=512)
    args = parser.parse_args(argv)
    overlap = set(args.clips) & set(args.photos)
    if overlap:
        parser.error(f"photos must show other people than the driving clips; both use {sorted(overlap)}")
    files = write_examples(
        args.out, args.seed, args.clips, args.photos, args.frames, args.size, args.photo_size
    )
    total = sum(f.stat().st_size for f in files)
    print(f"{len(files)} files, {total / 2**20:.2f} MB -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
