"""Photos in and out: robust image loading (any mode, bit depth, EXIF orientation, huge files) and atomic saving."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from internet.errors import InputError
from internet.video.atomic import atomic_output

MAX_IMAGE_SIDE = 4096  # larger photos are downscaled on load
MAX_DECODED_PIXELS = 150_000_000  # refuse to fully decode images beyond this (≈ 12 000 × 12 500)


def load_image(path: str | os.PathLike, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """Read a photo as (H, W, 3) uint8 RGB, whatever its mode, bit depth or EXIF orientation.

    RGBA/LA/P with transparency are composited on white; grayscale, 16-bit, float and CMYK are converted;
    EXIF rotation is applied; photos larger than ``max_side`` are downscaled (JPEGs are decoded at a reduced
    scale directly, so a 20 000 px JPEG costs little memory). Anything unreadable raises InputError.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Image not found: {path}")
    try:
        rgb = _load_with_pillow(path, max_side)
    except InputError:
        raise
    except (OSError, ValueError, TypeError, SyntaxError) as pillow_error:  # OpenCV knows a few more formats
        rgb = None if _pillow_format(path) else _load_with_opencv(path)
        if rgb is None:
            raise InputError(f"{path.name} is not a readable image ({_short(pillow_error)})") from None
    return _limit_side(rgb, max_side)


def _load_with_pillow(path: Path, max_side: int) -> np.ndarray:
    from PIL import Image, ImageOps

    with _pillow_pixel_limit(None), Image.open(path) as img:
        if img.format == "JPEG" and max(img.size) > max_side:
            img.draft("RGB", (max_side, max_side))  # DCT-domain downscale: cheap for huge JPEGs
        if img.size[0] * img.size[1] > MAX_DECODED_PIXELS:
            w, h = img.size
            raise InputError(
                f"{path.name} is {w}×{h} px, above the {MAX_DECODED_PIXELS // 1_000_000} MP limit; downscale it first"
            )
        img.load()
        img = ImageOps.exif_transpose(img)
        return _pil_to_rgb(img)


@contextlib.contextmanager
def _pillow_pixel_limit(limit: int | None) -> Iterator[None]:
    """Replace Pillow's decompression-bomb limit for a block; this module checks pixels itself."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _pil_to_rgb(img) -> np.ndarray:
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


# Signatures of the formats Pillow reads: when Pillow fails on one of these the file is damaged, and OpenCV
# must not try it (an 18-byte "PNG" whose first chunk claims 3 GB made OpenCV allocate 2.7 GB, then fail).
_PILLOW_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


def _pillow_format(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(8).startswith(_PILLOW_SIGNATURES)


def _load_with_opencv(path: Path) -> np.ndarray | None:
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_DECODED_PIXELS))  # read at OpenCV's first decode
    import cv2

    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile handles non-ASCII paths, cv2.imread does not
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)  # silent: its warnings would go to stderr
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH) if data.size else None
    except cv2.error:
        image = None
    finally:
        cv2.setLogLevel(level)
    if image is None:
        return None
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image.astype(np.float64) * (255.0 if image.max() <= 1.0 else 1.0), 0, 255)
        image = image.astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        image = (image[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)


def _limit_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    if min(h, w) < 2:
        raise InputError(f"The image is only {w}×{h} px")
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(rgb)
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def save_image(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image (PNG/JPEG by extension) through a temporary name."""
    from PIL import Image

    path = Path(path)
    with atomic_output(path) as tmp:
        Image.fromarray(rgb).save(tmp, format=_pil_format(path))
    return path


def _pil_format(path: Path) -> str:
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:120]


def resize_area(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` resized to ``size`` (w, h) with area averaging (the resampling for shrinking)."""
    import cv2

    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
