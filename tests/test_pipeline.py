"""End-to-end pipeline on generated media: SynthRunway clips with exact joints, a tiny random INTERNet,
cancellation, bad input; plus the real photo and clip from ../shared/media when present."""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pytest
import torch

from internet import INTERNet, load_config
from internet.errors import InputError
from internet.pipeline import AnimateOptions, Animator, Cancelled, KnownPose, OutputPaths, Progress, TimeSpent
from internet.pipeline.options import TIMED_STAGES
from internet.sources.poserig import Landmarks
from internet.video.io import probe_video, read_video_stats
from tests.media_factory import SHARED_CLIP, SHARED_PHOTO, make_video, write_frames
from training.synthrunway import ClipSpec, generate_clip

SIZE, FRAMES, FPS = 96, 12, 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A SynthRunway test clip as MP4 (lossless, with audio), its frames, exact joints and masks."""
    root = tmp_path_factory.mktemp("runway")
    folder = generate_clip(ClipSpec(seed=10000, index=3, frames=FRAMES, size=SIZE), root)
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted((folder / "frames").glob("*.png"))]
    video = write_frames(root / "drive clip é.mp4", frames, fps=FPS, audio_seconds=FRAMES / FPS)
    joints, masks = np.load(folder / "joints.npy"), np.load(folder / "mask.npy")
    marks = [Landmarks(joints[t], np.ones(len(joints[t])), masks[t].astype(np.float32)) for t in range(FRAMES)]
    return {"video": video, "frames": frames, "masks": masks, "pose": KnownPose(marks[0], marks)}


def test_pose_rig_with_exact_joints_beats_the_static_source(clip, tmp_path):
    outputs = OutputPaths(
        video=tmp_path / "result.mp4", side_by_side=tmp_path / "sbs.mp4",
        overlays=tmp_path / "overlays.mp4", anchors_json=tmp_path / "anchors.json",
    )  # fmt: skip
    options = AnimateOptions(size=SIZE, centre_crop=True, relative=True)  # full frame: output ≡ ground truth frame
    seen: list[Progress] = []
    result = Animator(None, poses=clip["pose"]).animate(
        clip["frames"][0], clip["video"], options, outputs, progress=seen.append, keep_frames=True
    )  # fmt: skip
    assert result.frame_count == FRAMES and len(result.frames) == FRAMES
    assert [p.done for p in seen if p.stage == "render"] == list(range(1, FRAMES + 1))

    # Output files: frame count, fps, size, audio kept.
    for path, width in [(outputs.video, SIZE), (outputs.side_by_side, 3 * SIZE)]:
        info, count = read_video_stats(path)
        assert count == FRAMES and info.fps == pytest.approx(FPS) and (info.width, info.height) == (width, SIZE)
        assert info.has_audio and info.codec == "h264"
    info, count = read_video_stats(outputs.overlays)
    assert count == FRAMES and (info.width, info.height) == (4 * 64, 2 * 64) and not info.has_audio
    data = json.loads(outputs.anchors_json.read_text())
    assert len(data["frames"]) == FRAMES and data["meta"]["fps"] == pytest.approx(FPS)
    assert np.allclose(data["frames"][5]["anchors_driving"], result.frames[5].motion.anchors_driving, atol=1e-4)
    assert not list(tmp_path.glob(".*"))  # no temporary files left

    # Quality: inside the person (union of ground-truth masks), the rig is closer to the truth than the
    # static source is, on average over the frames where the pose has changed.
    source = clip["frames"][0].astype(np.float32)
    rig_l1, static_l1 = [], []
    for t in range(1, FRAMES):
        region = cv2.dilate((clip["masks"][t] | clip["masks"][0]).astype(np.uint8), np.ones((5, 5))) > 0
        truth = clip["frames"][t].astype(np.float32)
        rig_l1.append(np.abs(result.frames[t].output - truth)[region].mean())
        static_l1.append(np.abs(source - truth)[region].mean())
    assert np.mean(rig_l1) < 0.85 * np.mean(static_l1), (np.mean(rig_l1), np.mean(static_l1))
    assert np.isnan(result.warp_error[0]) and np.isfinite(result.warp_error[1:]).all()


def test_cancel_and_failing_callbacks_leave_nothing(clip, tmp_path):
    outputs = OutputPaths(video=tmp_path / "r.mp4", side_by_side=tmp_path / "s.mp4", anchors_json=tmp_path / "a.json")
    options = AnimateOptions(size=64, centre_crop=True)
    cancel = threading.Event()

    def stop_after_three(p: Progress) -> None:
        if p.stage == "render" and p.done == 3:
            cancel.set()

    animator = Animator(None, poses=clip["pose"])
    with pytest.raises(Cancelled):
        animator.animate(clip["frames"][0], clip["video"], options, outputs, stop_after_three, cancel)
    assert list(tmp_path.iterdir()) == []

    def explode(p: Progress) -> None:
        if p.stage == "render" and p.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        animator.animate(clip["frames"][0], clip["video"], options, outputs, explode)
    assert list(tmp_path.iterdir()) == []


def test_best_frame_and_truncation(clip):
    pose = clip["pose"]
    known = KnownPose(pose.driving[7], pose.driving)  # the "photo" has frame 7's pose
    animator = Animator(None, poses=known)
    options = AnimateOptions(size=64, centre_crop=True, best_frame=True)
    result = animator.animate(clip["frames"][7], clip["video"], options)
    assert result.reference_index == 7 and result.frame_count == FRAMES and not result.warnings
    short = AnimateOptions(size=64, centre_crop=True, max_seconds=0.6, reference="first")
    result = animator.animate(clip["frames"][7], clip["video"], short)
    assert result.frame_count == 6 and any("0.6 s" in w for w in result.warnings)
    assert result.reference_index == 0
    default = animator.animate(clip["frames"][7], clip["video"], AnimateOptions(size=64, centre_crop=True,
                               max_seconds=0.6))  # fmt: skip
    assert default.reference_index == 5  # the default reference: the frame closest to the photo's, in the cut


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return INTERNet(load_config("tiny")).save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


def test_model_motion_plumbing(tiny_checkpoint, tmp_path):
    animator = Animator.from_pretrained(tiny_checkpoint)
    size = animator.model.config.image_size
    video = make_video(tmp_path / "d.mp4", 96, 64, frames=5, fps=5, audio=True)
    photo = np.full((80, 60, 3), 200, np.uint8)
    outputs = OutputPaths(video=tmp_path / "r.mp4", overlays=tmp_path / "o.mp4", anchors_json=tmp_path / "a.json")
    for relative in (True, False):
        options = AnimateOptions(motion_source="model", centre_crop=True, relative=relative, size=256)
        result = animator.animate(photo, video, options, outputs, keep_frames=True)
        assert result.size == size and any("ignored" in w for w in result.warnings)
        info, count = read_video_stats(outputs.video)
        assert count == 5 and (info.width, info.height) == (size, size) and info.has_audio
        motion = result.frames[2].motion
        k = animator.model.config.anchors.num_anchors
        assert motion.anchors_source.shape == (k, 2) and motion.weights.shape[0] == k + 1
        assert motion.jacobians_driving.shape == (k, 2, 2) and motion.flow.shape[-1] == 2
    # without a person and without --center-crop, the message says how to proceed
    with pytest.raises(InputError, match="center-crop"):
        animator.animate(photo, video, AnimateOptions(motion_source="model"))


def test_bad_inputs(tmp_path, tiny_checkpoint):
    animator = Animator.from_pretrained(None)
    one = make_video(tmp_path / "one.mp4", frames=1)
    with pytest.raises(InputError, match="single frame"):
        Animator.from_pretrained(tiny_checkpoint).animate(
            np.zeros((64, 64, 3), np.uint8), one, AnimateOptions(motion_source="model", centre_crop=True)
        )
    with pytest.raises(InputError, match="No person found in the photo"):
        animator.animate(np.full((64, 48, 3), 90, np.uint8), make_video(tmp_path / "v.mp4"), AnimateOptions())
    with pytest.raises(InputError, match="checkpoint"):
        animator.animate(np.zeros((64, 64, 3), np.uint8), one, AnimateOptions(motion_source="model"))
    with pytest.raises(InputError, match="checkpoint folder"):
        Animator.from_pretrained(tmp_path)
    with pytest.raises(InputError):
        AnimateOptions(size=63)


@pytest.mark.skipif(not (SHARED_PHOTO.is_file() and SHARED_CLIP.is_file()), reason="../shared/media absent")
def test_real_photo_and_clip_preview():
    result = Animator.from_pretrained(None).preview(SHARED_PHOTO, SHARED_CLIP, seconds=1.0, size=128)
    info = probe_video(SHARED_CLIP)
    assert result.frame_count == round(info.fps) and len(result.frames) == result.frame_count
    assert result.frames[0].output.shape == (128, 128, 3)
    crop = result.crop  # one square crop around the dancer, roughly centred on the portrait frame
    assert abs(crop.x0 + crop.side / 2 - info.width / 2) < 0.2 * info.width
    assert 0.5 * info.height < crop.side <= 1.1 * info.height
    person = result.frames[0].motion.weights[0] < 0.5  # the rig's person layer covers a plausible area
    assert 0.05 < person.mean() < 0.6


def test_sequential_reference_matches_the_threaded_render_and_errors_cross_threads(clip, tmp_path):
    """With exact joints pass 1 has one segment, so the threaded and the sequential render are identical, and
    both report their stage times on the caller's thread; an error raised while rendering in the producer
    thread reaches the caller as itself, leaving nothing."""
    options = AnimateOptions(size=64, centre_crop=True)
    timings: dict[bool, list[tuple[threading.Thread, TimeSpent]]] = {True: [], False: []}
    runs = [
        Animator(None, parallel=parallel, poses=clip["pose"]).animate(
            clip["frames"][0], clip["video"], options, keep_frames=True,
            timing=lambda spent, seen=timings[parallel]: seen.append((threading.current_thread(), spent)),
        )  # fmt: skip
        for parallel in (True, False)
    ]
    assert runs[0].frame_count == runs[1].frame_count == FRAMES
    for a, b in zip(runs[0].frames, runs[1].frames):
        assert a.index == b.index and np.array_equal(a.output, b.output)
    for seen in timings.values():
        assert {thread for thread, _ in seen} == {threading.current_thread()}
        assert {spent.stage for _, spent in seen} <= set(TIMED_STAGES) and all(s.seconds >= 0 for _, s in seen)
        assert all(sum(s.seconds for _, s in seen if s.stage == stage) > 0 for stage in ("render", "overlays"))

    class Boom(RuntimeError):
        pass

    animator = Animator(None, poses=clip["pose"])
    original = animator._motion_source

    def failing_source(*args):
        source = original(*args)
        render, calls = source.render, []

        def render_or_fail(*a):
            calls.append(1)
            if len(calls) == 4:
                raise Boom("frame 3")
            return render(*a)

        source.render = render_or_fail
        return source

    animator._motion_source = failing_source
    before = threading.active_count()
    with pytest.raises(Boom, match="frame 3"):
        animator.animate(clip["frames"][0], clip["video"], options, OutputPaths(video=tmp_path / "r.mp4"))
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() <= before  # the producer thread has ended


@pytest.mark.skipif(not (SHARED_PHOTO.is_file() and SHARED_CLIP.is_file()), reason="../shared/media absent")
def test_parallel_analysis_segments_agree_with_one_tracker_and_cancel_cleanly():
    """Pass 1 on the real clip with two trackers side by side gives the frames, crop and render that one
    tracker gives (they differ only from where the second tracker starts), and a cancel during pass 1 stops
    both workers."""
    options = AnimateOptions(size=128, max_seconds=3.0)
    runs = [
        Animator(None, parallel=parallel).animate(SHARED_PHOTO, SHARED_CLIP, options, keep_frames=True)
        for parallel in (True, False)
    ]
    count = runs[0].frame_count
    assert count == runs[1].frame_count == round(3.0 * probe_video(SHARED_CLIP).fps)
    a, b = runs[0].crop, runs[1].crop
    assert max(abs(a.x0 - b.x0), abs(a.y0 - b.y0), abs(a.side - b.side)) <= 0.03 * b.side
    first_half = [np.abs(x.output.astype(int) - y.output.astype(int)).mean() for x, y in
                  zip(runs[0].frames[: count // 2], runs[1].frames[: count // 2])]  # fmt: skip
    everything = [np.abs(x.output.astype(int) - y.output.astype(int)).mean() for x, y in
                  zip(runs[0].frames, runs[1].frames)]  # fmt: skip
    if a == b and np.array_equal(runs[0].source, runs[1].source):  # same framing: the first segment's frames match
        assert max(first_half) == 0
    assert all(np.array_equal(x, y) for x, y in zip(runs[0].driving_joints[: count // 2], runs[1].driving_joints))
    assert np.mean(everything) < 4.0, np.mean(everything)

    cancel, before = threading.Event(), threading.active_count()

    def stop_in_pass_one(p: Progress) -> None:
        if p.stage == "analyse" and p.done >= 6:
            cancel.set()

    with pytest.raises(Cancelled):
        Animator(None).animate(SHARED_PHOTO, SHARED_CLIP, options, progress=stop_in_pass_one, cancel=cancel)
    assert threading.active_count() <= before


def test_result_only_pose_rig_decodes_the_video_once(clip, tmp_path, monkeypatch):
    """Without side-by-side, overlays or kept frames, pass 2 reads pass 1's grey spool instead of decoding the
    video again: one reader instead of two, the same frames, a temporal meter within resampling noise of the
    full-size one, the spool file closed afterwards."""
    from internet.pipeline import analysis, render
    from internet.pipeline.spool import GreySpool
    from internet.video.io import VideoReader

    readers, spools = [], []
    reader_class, spool_class = VideoReader, GreySpool

    def counting_reader(*args, **kwargs):
        readers.append(kwargs.get("size"))
        return reader_class(*args, **kwargs)

    class TrackedSpool(spool_class):
        def __init__(self, size):
            super().__init__(size)
            spools.append(self)

    for module in (analysis, render):  # pass 1 and pass 2
        monkeypatch.setattr(module, "VideoReader", counting_reader)
    monkeypatch.setattr(analysis, "GreySpool", TrackedSpool)
    options = AnimateOptions(size=SIZE, centre_crop=True)
    animator = Animator(None, poses=clip["pose"])
    once = animator.animate(clip["frames"][0], clip["video"], options, OutputPaths(video=tmp_path / "once.mp4"))
    assert len(readers) == 1 and len(spools) == 1 and spools[0].count == FRAMES
    assert spools[0]._file.closed
    readers.clear()
    twice = animator.animate(clip["frames"][0], clip["video"], options, OutputPaths(video=tmp_path / "twice.mp4",
                             side_by_side=tmp_path / "sbs.mp4"))  # fmt: skip
    assert len(readers) == 2 and len(spools) == 1  # side-by-side shows the driving frame: decoded again
    assert once.frame_count == twice.frame_count == FRAMES
    for path in ("once.mp4", "twice.mp4"):
        assert read_video_stats(tmp_path / path)[1] == FRAMES
    a, b = once.warp_error[1:], twice.warp_error[1:]
    assert np.isnan(once.warp_error[0]) and np.all(np.isfinite(a)) and b.max() > 0
    assert np.abs(a - b).max() <= 0.25 * b.max() + 1e-3, (a, b)  # the same diagnostic, resampled differently


def test_grey_spool_round_trip_and_the_meter_takes_grey():
    from internet.pipeline.spool import GreySpool
    from internet.video.temporal import WarpErrorMeter

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40, 30, 3), dtype=np.uint8) for _ in range(5)]
    spool = GreySpool((30, 40))  # the frames' own size: only the grey conversion happens
    for frame in frames:
        spool.append(frame)
    back = list(spool.frames())
    spool.close()
    assert len(back) == 5
    for frame, grey in zip(frames, back):  # ITU-R BT.601 luma, computed independently
        luma = frame.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        assert grey.shape == (40, 30) and np.abs(grey - luma).max() <= 1.0

    meters = WarpErrorMeter(16), WarpErrorMeter(16)
    ramp = np.tile(np.linspace(0, 255, 32, dtype=np.float32), (32, 1))
    for shift in range(3):
        driving = np.roll(ramp, shift, axis=1).astype(np.uint8)
        output = np.dstack([driving] * 3)
        confidence = np.ones((32, 32), np.float32)
        rgb_error = meters[0].update(np.dstack([driving] * 3), output, confidence)
        grey_error = meters[1].update(driving, output, confidence)
        assert np.array_equal(rgb_error.map, grey_error.map)  # a grey frame given as RGB or as grey: the same


def test_single_threaded_blas_limits_and_restores():
    from threadpoolctl import threadpool_info

    from internet.speedups.blas import single_threaded_blas

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("no BLAS library that threadpoolctl can see")
    with single_threaded_blas():
        assert blas_threads() == [1] * len(before)
    assert blas_threads() == before


def test_the_photo_pose_is_found_once_per_photo(monkeypatch):
    """Animator keeps MediaPipe's result for recent photos by their pixels: the same photo again is not
    looked for again, another photo (or the same pixels in another shape) is, and the kept arrays are read-only."""
    from internet.pipeline import photo as pipeline

    calls = []

    def fake_find(rgb):
        calls.append(rgb.shape)
        points = np.full((13, 2), float(rgb[0, 0, 0]), np.float32)
        return pipeline.SourceMarks(Landmarks(points, np.ones(13, np.float32), np.zeros((4, 4), np.float32)), 1.0)

    monkeypatch.setattr(pipeline, "_find_in_photo", fake_find)
    photos = pipeline.PhotoPoses()
    a, b = np.zeros((8, 6, 3), np.uint8), np.full((8, 6, 3), 7, np.uint8)
    first = photos.find(a)
    assert photos.find(a.copy()) is first and calls == [(8, 6, 3)]
    assert photos.find(b).points[0, 0] == 7 and photos.find(a.reshape(6, 8, 3)) is not first
    assert len(calls) == 3
    with pytest.raises(ValueError):
        first.landmarks.points[0, 0] = 1.0
    for i in range(pipeline.PhotoPoses.CAPACITY):  # the oldest entries make room
        photos.find(np.full((8, 6, 3), 100 + i, np.uint8))
    photos.find(a)
    assert len(calls) == 4 + pipeline.PhotoPoses.CAPACITY
