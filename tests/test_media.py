"""Media I/O: odd images, video probing (rotation, VFR, audio), streaming decode, atomic H.264 encode."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from internet.errors import InputError
from internet.video import images
from internet.video.images import load_image
from internet.video.io import VideoReader, VideoWriter, probe_video, read_video_stats
from tests.media_factory import ffmpeg, make_vfr_video, make_video


def _gradient(h: int = 40, w: int = 60) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 128)], -1).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ images


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:10, :, 3] = 255  # top half opaque red-ish, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = load_image(tmp_path / "a.png")
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert (rgb[:10, :, 0] == 200).all() and (rgb[:10, :, 1] == 0).all()
    assert (rgb[10:] == 255).all()


def test_grayscale_and_16bit(tmp_path):
    gray = _gradient()[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    rgb = load_image(tmp_path / "g.png")
    assert rgb.shape == (*gray.shape, 3) and (rgb == gray[..., None]).all()

    deep = gray.astype(np.uint16) * 257  # 16-bit, same picture
    Image.fromarray(deep).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb16 = load_image(tmp_path / "g16.png")
    assert np.abs(rgb16[..., 1].astype(int) - gray).max() <= 1


def test_16bit_colour_png(tmp_path):
    import cv2

    colour = _gradient()
    cv2.imwrite(str(tmp_path / "c16.png"), colour[..., ::-1].astype(np.uint16) * 257)
    rgb = load_image(tmp_path / "c16.png")
    assert np.abs(rgb.astype(int) - colour).max() <= 1


def test_cmyk_jpeg(tmp_path):
    Image.fromarray(_gradient()).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    rgb = load_image(tmp_path / "c.jpg")
    assert rgb.shape == (40, 60, 3)
    assert np.abs(rgb.astype(int) - _gradient()).mean() < 12


def test_exif_rotation_is_applied(tmp_path):
    img = Image.fromarray(_gradient(40, 60))
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    rgb = load_image(tmp_path / "r.jpg")
    assert rgb.shape == (60, 40, 3)
    expected = np.rot90(_gradient(40, 60), k=-1)
    assert np.abs(rgb.astype(int) - expected).mean() < 8


def test_huge_image_is_downscaled_and_pixel_limit(tmp_path, monkeypatch):
    wide = np.tile(_gradient(8, 200), (20, 100, 1))  # 20 000 × 160
    Image.fromarray(wide).save(tmp_path / "wide.png")
    rgb = load_image(tmp_path / "wide.png", max_side=1000)
    assert rgb.shape == (8, 1000, 3)
    Image.fromarray(wide).save(tmp_path / "wide.jpg")
    assert max(load_image(tmp_path / "wide.jpg", max_side=1000).shape) == 1000
    monkeypatch.setattr(images, "MAX_DECODED_PIXELS", 1_000_000)
    with pytest.raises(InputError, match="limit"):
        load_image(tmp_path / "wide.png")


def test_unreadable_images(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        load_image(tmp_path / "notes.txt")
    Image.fromarray(_gradient()).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError):
        load_image(tmp_path / "truncated.jpg")
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.png")
    video = make_video(tmp_path / "v.mp4")
    with pytest.raises(InputError):
        load_image(video)


def test_paths_with_spaces_and_non_ascii(tmp_path):
    folder = tmp_path / "dossier été 写真"
    folder.mkdir()
    Image.fromarray(_gradient()).save(folder / "photo é.png")
    assert load_image(folder / "photo é.png").shape == (40, 60, 3)
    video = make_video(folder / "clip ü.mp4", frames=4)
    assert read_video_stats(video)[1] == 4
    with VideoWriter(folder / "sortie ß.mp4", 10, (32, 16)) as writer:
        writer.write(np.zeros((16, 32, 3), np.uint8))
    assert (folder / "sortie ß.mp4").is_file()


# ------------------------------------------------------------------------------------------------ probing


def test_probe_plain_video_with_audio(tmp_path):
    info = probe_video(make_video(tmp_path / "a.mp4", 96, 64, frames=12, fps=12, audio=True))
    assert (info.width, info.height, info.rotation) == (96, 64, 0)
    assert info.fps == pytest.approx(12) and info.has_audio and not info.variable_frame_rate
    assert info.frame_count == 12 and info.duration == pytest.approx(1.0, abs=0.1)
    assert not probe_video(make_video(tmp_path / "b.mp4")).has_audio


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_phone_video(tmp_path, rotation):
    info = probe_video(make_video(tmp_path / "r.mp4", 96, 64, frames=3, rotation=rotation))
    assert info.rotation == rotation % 360
    expected = (96, 64) if rotation == 180 else (64, 96)
    assert (info.width, info.height) == expected
    frames = list(VideoReader(info))
    assert len(frames) == 3 and frames[0].shape == (expected[1], expected[0], 3)


def test_variable_frame_rate_is_resampled(tmp_path):
    info = probe_video(make_vfr_video(tmp_path / "vfr.mp4"))
    assert info.variable_frame_rate
    with VideoReader(info, fps=10) as reader:
        count = sum(1 for _ in reader)
    duration = 10 / 30 + 15 * 2 / 30  # seconds covered by the 25 source frames
    assert abs(count - duration * 10) <= 2


def test_not_a_video(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(InputError, match="not a video"):
        probe_video(tmp_path / "x.mp4")
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440", "-t", "0.5", str(tmp_path / "audio.m4a"))
    with pytest.raises(InputError, match="no video stream"):
        probe_video(tmp_path / "audio.m4a")
    with pytest.raises(InputError, match="not found"):
        probe_video(tmp_path / "missing.mp4")


def test_an_image_is_a_one_frame_video(tmp_path):
    Image.fromarray(_gradient()).save(tmp_path / "p.png")
    info, count = read_video_stats(tmp_path / "p.png")
    assert count == 1 and (info.width, info.height) == (60, 40)


# ------------------------------------------------------------------------------------------------ decoding


def test_reader_truncates_resizes_and_stops_early(tmp_path):
    info = probe_video(make_video(tmp_path / "a.mp4", frames=20, fps=10))
    with VideoReader(info, max_seconds=1.0, size=(48, 32)) as reader:
        frames = list(reader)
    assert len(frames) == 10 and frames[0].shape == (32, 48, 3)
    reader = VideoReader(info)
    next(reader)
    reader.close()
    assert reader._proc.poll() is not None  # ffmpeg reaped
    assert list(reader) == []


def test_corrupt_video_stream_is_an_input_error(tmp_path):
    path = make_video(tmp_path / "a.mp4", 96, 64, frames=30)
    data = bytearray(path.read_bytes())
    data[48 : len(data) // 2] = bytes(len(data) // 2 - 48)  # zero the start of the coded frames
    path.write_bytes(bytes(data))
    info = probe_video(path)  # the container header is still fine
    with pytest.raises(InputError, match="Cannot decode"):
        list(VideoReader(info))


# ------------------------------------------------------------------------------------------------ encoding


def _moving_frames(n: int, w: int = 64, h: int = 48) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        frame = np.full((h, w, 3), 40, np.uint8)
        frame[10:30, 4 + 3 * i : 20 + 3 * i] = (250, 200, 20)
        frames.append(frame)
    return frames


def test_writer_output_plays_back(tmp_path):
    frames = _moving_frames(8)
    with VideoWriter(tmp_path / "out.mp4", 8, (64, 48)) as writer:
        for frame in frames:
            writer.write(frame)
    info, count = read_video_stats(tmp_path / "out.mp4")
    assert count == 8 and (info.width, info.height) == (64, 48) and info.fps == pytest.approx(8)
    assert info.codec == "h264" and not info.has_audio
    decoded = list(VideoReader(info))
    assert np.abs(decoded[5].astype(int) - frames[5]).mean() < 6
    assert not list(tmp_path.glob(".*partial*"))


def test_writer_keeps_audio_and_cuts_it(tmp_path):
    source = make_video(tmp_path / "src.mp4", frames=30, fps=10, audio=True)
    with VideoWriter(tmp_path / "out.mp4", 10, (64, 48), audio_from=source) as writer:
        for frame in _moving_frames(10):
            writer.write(frame)
    info = probe_video(tmp_path / "out.mp4")
    assert info.has_audio and info.duration == pytest.approx(1.0, abs=0.15)
    silent = make_video(tmp_path / "silent.mp4", frames=10)
    with VideoWriter(tmp_path / "out2.mp4", 10, (64, 48), audio_from=silent) as writer:
        writer.write(_moving_frames(1)[0])
    assert not probe_video(tmp_path / "out2.mp4").has_audio


def test_interrupted_render_leaves_nothing(tmp_path):
    (tmp_path / "out.mp4").write_bytes(b"previous result")
    with pytest.raises(KeyboardInterrupt), VideoWriter(tmp_path / "out.mp4", 10, (64, 48)) as writer:
        for frame in _moving_frames(5):
            writer.write(frame)
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    assert (tmp_path / "out.mp4").read_bytes() == b"previous result"


def test_writer_rejects_bad_frames_and_folders(tmp_path):
    with pytest.raises(InputError, match="folder"):
        VideoWriter(tmp_path / "nope" / "out.mp4", 10, (64, 48))
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "out.mp4", 10, (63, 48))
    writer = VideoWriter(tmp_path / "out.mp4", 10, (64, 48))
    with pytest.raises(ValueError):
        writer.write(np.zeros((48, 64), np.uint8))
    writer.abort()
    with pytest.raises(InputError, match="no frames"):
        VideoWriter(tmp_path / "empty.mp4", 10, (64, 48)).close()
    assert list(tmp_path.iterdir()) == []


def test_writer_colours_survive_the_round_trip(tmp_path):
    """The writer converts RGB to yuv420p itself (OpenCV): saturated and grey patches come back as they went in
    (within H.264 + chroma subsampling error), so its matrix and range agree with the decoder's (BT.601, limited)."""
    patches = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (128, 128, 128), (200, 150, 30)]
    frame = np.zeros((32, 16 * len(patches), 3), np.uint8)
    for i, colour in enumerate(patches):
        frame[:, 16 * i : 16 * (i + 1)] = colour
    with VideoWriter(tmp_path / "c.mp4", 4, (frame.shape[1], frame.shape[0])) as writer:
        for _ in range(3):
            writer.write(frame)
    decoded = next(iter(VideoReader(probe_video(tmp_path / "c.mp4")))).astype(int)
    for i, colour in enumerate(patches):
        centre = decoded[8:24, 16 * i + 4 : 16 * i + 12].reshape(-1, 3).mean(0)
        assert np.abs(centre - colour).max() <= 4, (colour, centre)
