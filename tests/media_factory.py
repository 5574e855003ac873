"""Generate small test videos and images with the bundled ffmpeg (no media files in the repository)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from internet.video.io import ffmpeg_exe

SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
SHARED_PHOTO = SHARED_MEDIA / "photo_ubc_frame_silver_dress.jpg"
SHARED_CLIP = SHARED_MEDIA / "drive_dance_indoor_yellow_top.mp4"


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", *args], check=True)


def make_video(
    path: Path,
    width: int = 96,
    height: int = 64,
    frames: int = 10,
    fps: float = 10,
    audio: bool = False,
    rotation: int = 0,
) -> Path:
    """A ``testsrc`` clip (moving pattern, no person), optionally with a sine audio track and rotation."""
    args = ["-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate={fps}"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
    args += ["-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-t", f"{frames / fps:.3f}"]
    if rotation == 0:
        ffmpeg(*args, str(path))
        return path
    plain = path.with_name("plain-" + path.name)
    ffmpeg(*args, str(plain))
    ffmpeg("-display_rotation", str(rotation), "-i", str(plain), "-c", "copy", str(path))
    plain.unlink()
    return path


def make_vfr_video(path: Path, width: int = 96, height: int = 64) -> Path:
    """1 s at 30 fps then frames every 2/30 s: an average rate different from the base rate."""
    pts = "if(lt(N,10),N/30/TB,(N*2-10)/30/TB)"
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate=30,setpts='{pts}'",
        "-frames:v", "25", "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    return path


def write_frames(path: Path, frames: list[np.ndarray], fps: float = 10, audio_seconds: float = 0) -> Path:
    """Encode RGB frames losslessly-ish (crf 0) to MP4, optionally with a sine audio track."""
    h, w = frames[0].shape[:2]
    cmd = [ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
    if audio_seconds:
        cmd += ["-f", "lavfi", "-t", str(audio_seconds), "-i", "sine=frequency=440:sample_rate=16000"]
        cmd += ["-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-crf", "0", "-pix_fmt", "yuv444p", str(path)]
    subprocess.run(cmd, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    return path
