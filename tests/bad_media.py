"""Generators of bad and odd media for the hardening tests: each writes one file and returns it.

Persons come from the SynthRunway example media (``assets/examples``): no real people and nothing
downloaded. Every generator is deterministic and fast (well under a second each, the 10 000² JPEG aside).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.media_factory import ffmpeg

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
PERSON_PHOTO = EXAMPLES / "source_10000_04.png"  # 512², one person in full view
OTHER_PERSON = EXAMPLES / "source_10000_09.png"
RUNWAY_CLIP = EXAMPLES / "runway_10000_00.mp4"  # 256², 30 fps, a person walking


def person(side: int = 256) -> np.ndarray:
    """The example source photo as RGB uint8, resized to ``side``²."""
    return np.asarray(Image.open(PERSON_PHOTO).convert("RGB").resize((side, side), Image.Resampling.LANCZOS))


def save(path: Path, rgb: np.ndarray, **options) -> Path:
    Image.fromarray(rgb).save(path, **options)
    return path


# --------------------------------------------------------------------------------------------- any file


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def text(path: Path) -> Path:
    """A text file, whatever its extension says."""
    path.write_text("This is not a picture of anybody.\n" * 20, encoding="utf-8")
    return path


def truncated(src: Path, path: Path, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of ``src``'s bytes (an interrupted download)."""
    data = src.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    return path


def copy(src: Path, path: Path) -> Path:
    path.write_bytes(src.read_bytes())
    return path


# --------------------------------------------------------------------------------------------- images


def tiny_image(path: Path) -> Path:
    return save(path, np.full((1, 1, 3), 128, np.uint8))


def huge_image(path: Path, side: int = 10_000) -> Path:
    """A ``side``² JPEG of the person (nearest-neighbour upscale; JPEG so that loading can use draft mode)."""
    import cv2

    big = cv2.resize(person(500), (side, side), interpolation=cv2.INTER_NEAREST)
    return save(path, big, quality=60)


def png_size_claim(path: Path, width: int, height: int) -> Path:
    """A valid 8×8 PNG whose header claims ``width``×``height`` (a decompression-bomb header)."""
    data = bytearray(save(path, np.zeros((8, 8, 3), np.uint8)).read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def png_chunk_claim(path: Path, length: int = 0xB880640B) -> Path:
    """18 bytes: the PNG signature and a first chunk claiming ``length`` bytes (found by tests/test_fuzz.py)."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", length) + b"IHDR" + b"\x00\x01")
    return path


def rgba(path: Path) -> Path:
    """The person with a transparent background outside a centred ellipse."""
    rgb = person()
    h, w = rgb.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    alpha = ((((x - w / 2) / (0.45 * w)) ** 2 + ((y - h / 2) / (0.5 * h)) ** 2) <= 1).astype(np.uint8) * 255
    return save(path, np.dstack([rgb, alpha]))


def sixteen_bit(path: Path) -> Path:
    """A 16-bit-per-channel colour PNG (written by OpenCV, which Pillow reads as a 48-bit RGB image)."""
    import cv2

    deep = person()[..., ::-1].astype(np.uint16) * 257
    cv2.imwrite(str(path), deep)
    return path


def grayscale(path: Path) -> Path:
    return save(path, np.asarray(Image.fromarray(person()).convert("L")))


def cmyk(path: Path) -> Path:
    Image.fromarray(person()).convert("CMYK").save(path, quality=95)
    return path


def exif_rotated(path: Path) -> Path:
    """The person stored lying on its side with EXIF orientation 6 ("rotate 90° clockwise to display")."""
    stored = np.rot90(person(), k=1).copy()  # 90° anticlockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(path, stored, exif=exif.tobytes())


def cut_at_the_knees(path: Path) -> Path:
    """The person's top 62 %: head to just above the knees."""
    rgb = person()
    return save(path, np.ascontiguousarray(rgb[: int(0.62 * rgb.shape[0])]))


def texture(path: Path, side: int = 256, seed: int = 0) -> Path:
    """A smooth random texture: no person at all."""
    import cv2

    noise = np.random.default_rng(seed).uniform(0, 255, (side // 8, side // 8, 3)).astype(np.uint8)
    return save(path, cv2.resize(noise, (side, side), interpolation=cv2.INTER_CUBIC))


def two_people(path: Path) -> Path:
    """The two example source photos side by side (two different people, 512×256)."""
    other = np.asarray(Image.open(OTHER_PERSON).convert("RGB").resize((256, 256), Image.Resampling.LANCZOS))
    return save(path, np.concatenate([person(), other], axis=1))


# --------------------------------------------------------------------------------------------- videos


H264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p")


def clip(path: Path, frames: int = 8, codec: tuple[str, ...] = H264) -> Path:
    """The first ``frames`` of the example runway clip (a walking person, 256², 30 fps), re-encoded."""
    ffmpeg("-i", str(RUNWAY_CLIP), "-frames:v", str(frames), *codec, str(path))
    return path


def gif(path: Path, frames: int = 8) -> Path:
    return clip(path, frames, ("-vf", "split[a][b];[a]palettegen[p];[b][p]paletteuse"))


def webm(path: Path, frames: int = 8) -> Path:
    vp9 = ("-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k")
    return clip(path, frames, vp9)


def mov(path: Path, frames: int = 8) -> Path:
    return clip(path, frames, ("-c:v", "mjpeg", "-q:v", "3"))


def one_frame(path: Path) -> Path:
    return clip(path, frames=1)


def zero_frames(path: Path) -> Path:
    """An MP4 whose header describes 8 frames but whose media data is gone (moov first, mdat emptied)."""
    full = clip(path.with_name("full-" + path.name), 8, (*H264, "-movflags", "+faststart"))
    data = full.read_bytes()
    full.unlink()
    mdat = data.index(b"mdat")
    path.write_bytes(data[: mdat + 4])
    return path


def image_as_video(path: Path) -> Path:
    """A PNG photo saved under a video name."""
    Image.fromarray(person()).save(path, format="PNG")
    return path


def video_as_image(path: Path) -> Path:
    """An MP4 saved under a photo name."""
    return clip(path, frames=4, codec=("-c:v", "libx264", "-f", "mp4"))


def audio_only(path: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440", "-t", "0.5", "-c:a", "aac", str(path))
    return path


def variable_frame_rate(path: Path) -> Path:
    """The walking person at 30 fps for 10 frames, then every other frame held for 2/30 s."""
    pts = "if(lt(N,10),N/30/TB,(N*2-10)/30/TB)"
    ffmpeg("-i", str(RUNWAY_CLIP), "-vf", f"setpts='{pts}'", "-frames:v", "16", "-fps_mode", "vfr",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))  # fmt: skip
    return path


def long_header_claim(path: Path, hours: float = 4.0) -> Path:
    """An 8-frame Matroska clip whose header says it lasts ``hours`` (the Duration element is patched)."""
    clip(path, frames=8, codec=("-c:v", "libx264", "-f", "matroska"))
    data = bytearray(path.read_bytes())
    at = data.index(bytes([0x44, 0x89, 0x88]))  # Duration, an 8-byte float in milliseconds
    data[at + 3 : at + 11] = struct.pack(">d", hours * 3600 * 1000.0)
    path.write_bytes(bytes(data))
    return path


def testsrc(path: Path, frames: int = 8) -> Path:
    """A moving test pattern: a video with no person in it."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=128x128:rate=30", "-frames:v", str(frames),
           "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))  # fmt: skip
    return path


def corrupt_middle(path: Path) -> Path:
    """A clip whose coded frames after the first are overwritten with zeros (the header is intact)."""
    clip(path, frames=8, codec=(*H264, "-movflags", "+faststart"))
    data = bytearray(path.read_bytes())
    start = data.index(b"mdat") + 4
    middle = start + (len(data) - start) // 3
    data[middle:] = bytes(len(data) - middle)
    path.write_bytes(bytes(data))
    return path
