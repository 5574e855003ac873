"""Pass 1 in segments: the segments' readers give exactly the frames one reader gives,
with or without an audio track, so two trackers see the same driver as one, whatever the clip's length."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from internet.pipeline import AnimateOptions, Animator
from internet.sources.poserig.retarget import torso_length
from internet.video.io import VideoReader, probe_video, read_video_stats
from tests.media_factory import SHARED_CLIP, SHARED_PHOTO, ffmpeg

SHARED = pytest.mark.skipif(not (SHARED_PHOTO.is_file() and SHARED_CLIP.is_file()), reason="../shared/media absent")


def _clip(path, audio: bool, video_delay: float = 0.0, seconds: float = 4.0, fps: int = 24):
    """A moving test pattern (every frame different), optionally with audio and a video that starts later."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size=96x64:rate={fps}"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
    if video_delay:
        args += ["-filter:v", f"setpts=PTS+{video_delay}/TB"]
    args += ["-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p"] + (["-c:a", "aac"] if audio else [])
    ffmpeg(*args, str(path))
    return probe_video(path)


def _read(info, **kwargs) -> np.ndarray:
    with VideoReader(info, size=(48, 32), **kwargs) as reader:
        return np.array([frame.astype(np.int16) for frame in reader])


@pytest.mark.parametrize("audio, delay", [(False, 0.0), (True, 0.0), (True, 0.25)])
@pytest.mark.parametrize("max_seconds", [None, 3.0, 1.5])
def test_reader_segments_join_up_to_the_whole_stream(tmp_path, audio, delay, max_seconds):
    """A reader from frame n gives frames n, n + 1, ... of the stream a reader from 0 gives, up to the same cut.
    With an audio track the old reader padded the skipped frames with copies of frame n and then read on to the
    cut: the second tracker saw the driver stand still, then the whole clip again."""
    info = _clip(tmp_path / "c.mp4", audio, delay)
    whole = _read(info, fps=24, max_seconds=max_seconds)
    expected = round(24 * min(max_seconds or 4.0, 4.0))
    assert len(whole) == expected
    assert all(np.abs(whole[i + 1] - whole[i]).mean() > 0.5 for i in range(round(24 * delay), len(whole) - 1))
    for start in (1, len(whole) // 2, len(whole) - 1):
        tail = _read(info, fps=24, max_seconds=max_seconds, start_frame=start)
        assert len(tail) == len(whole) - start
        assert np.array_equal(tail, whole[start:])
        head = _read(info, fps=24, max_seconds=max_seconds, max_frames=start)
        assert np.array_equal(np.concatenate([head, tail]), whole)


def test_a_video_that_starts_after_its_audio_keeps_its_lead_in(tmp_path):
    """The lead-in before the first video frame is held (copies of that frame), so the result stays in sync with
    the driving video's audio, and a segment's frames are counted from the same start."""
    info = _clip(tmp_path / "late.mp4", audio=True, video_delay=0.25)
    frames = _read(info, fps=24)
    assert len(frames) == 96
    lead = round(0.25 * 24)
    assert all(np.array_equal(frames[i], frames[lead]) for i in range(lead))
    assert np.array_equal(_read(info, fps=24, start_frame=lead + 2)[0], frames[lead + 2])


@pytest.fixture(scope="module")
def dance_with_audio(tmp_path_factory):
    """The shared dance clip with an audio track muxed in (the shared clip has none; real clips do)."""
    path = tmp_path_factory.mktemp("dance") / "dance with audio.mp4"
    ffmpeg("-i", str(SHARED_CLIP), "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000",
           "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-shortest", str(path))  # fmt: skip
    return path


def _max_joint_error(a, b) -> np.ndarray:
    """Per frame: the largest joint distance, in torso lengths of ``b``."""
    return np.array([np.linalg.norm(x - y, axis=1).max() / torso_length(y) for x, y in zip(a, b, strict=True)])


@SHARED
def test_two_trackers_track_the_driver_one_tracker_tracks(dance_with_audio):
    """The same poses, frame for frame, with the two-tracker pass 1 on and off; the old reader made the second
    tracker's frames a stale pose (more than a torso length off) and counted 1.5x the frames."""
    options = AnimateOptions(size=128, max_seconds=3.0)
    runs = [Animator(None, parallel=p).animate(SHARED_PHOTO, dance_with_audio, options) for p in (True, False)]
    expected = round(3.0 * probe_video(dance_with_audio).fps)
    assert [len(r.driving_joints) for r in runs] == [expected, expected]
    assert [r.frame_count for r in runs] == [expected, expected]
    assert all(j is not None for r in runs for j in r.driving_joints)
    error = _max_joint_error(runs[0].driving_joints, runs[1].driving_joints)
    assert error.max() < 0.12, np.round(error, 3)
    assert np.median(error) < 0.04, np.round(error, 3)


@SHARED
def test_the_start_of_the_output_does_not_depend_on_the_clip_length(dance_with_audio, tmp_path):
    """Through the CLI as a user runs it: --max-seconds 2 and 4 give files of exactly that many frames (and the
    message says so), and the first 2 s track the same poses."""
    fps = probe_video(dance_with_audio).fps
    joints = {}
    for seconds in (2, 4):
        out = tmp_path / f"o{seconds}.mp4"
        run = subprocess.run(
            [sys.executable, "-m", "internet.animate", str(SHARED_PHOTO), str(dance_with_audio), "-o", str(out),
             "--size", "128", "--max-seconds", str(seconds)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        info, count = read_video_stats(out)
        assert count == round(seconds * fps)
        assert f"({count} frames" in run.stdout
        assert info.has_audio and info.duration == pytest.approx(seconds, abs=0.1)
        result = Animator(None).animate(SHARED_PHOTO, dance_with_audio, AnimateOptions(size=128, max_seconds=seconds))
        joints[seconds] = result.driving_joints
    n = len(joints[2])
    error = _max_joint_error(joints[4][:n], joints[2])
    assert error.max() < 0.12, np.round(error, 3)
