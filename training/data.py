"""Training data: SynthRunway clips (exact flow) and real videos in the FashionVideo layout (DIS flow).

Sampling follows the paper (Sec 3.4): the source S is the first frame D_1, the driving frame D_t is drawn
uniformly among frames at least ``min_offset`` frames in (2 s at 30 fps: 0-based index t > 60), and D_{t-1}
comes along for the temporal loss. Clips too short for that draw t from their second half (t >= 1 always).

Determinism (exact resume): ``dataset.sample(index, generator)`` depends only on the index and the state of
the ``torch.Generator``; ``dataset[index]`` seeds a fresh generator from (seed, epoch, index), so call
``dataset.set_epoch(epoch)`` at the start of every epoch. A clip that fails to read is skipped with a
warning (the next index is tried), so one corrupt file does not end an epoch.

CLI (real data)::

    python -m training.data --root VIDEOS [--list fashion_train.txt] --size 512 --check
    python -m training.data --root VIDEOS --size 512 --precompute-flow --cache FLOWS [--workers W]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from internet.errors import InputError
from training.flow import FlowCache, FlowEstimate, estimate_backward_flow

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FIT_MODES = ("resize", "crop", "pad")
MAX_SKIPS = 8


@dataclass
class VideoSample:
    """One training example; ``collate_samples`` batches tensors (B, ...) and makes clip/t lists."""

    source: torch.Tensor  # (3, H, W) float32 in [0, 1], D_1
    driving: torch.Tensor  # (3, H, W) D_t
    previous: torch.Tensor  # (3, H, W) D_{t-1}
    flow: torch.Tensor  # (H, W, 2) float32 backward flow in pixels: driving(x) ≈ previous(x + flow(x))
    valid: torch.Tensor  # (1, H, W) float32, 1 where the flow is reliable (GT visible / fb-consistent)
    clip: str | list[str]
    t: int | list[int]


def collate_samples(samples: list[VideoSample]) -> VideoSample:
    """Stack samples into one batch."""
    return VideoSample(
        source=torch.stack([s.source for s in samples]),
        driving=torch.stack([s.driving for s in samples]),
        previous=torch.stack([s.previous for s in samples]),
        flow=torch.stack([s.flow for s in samples]),
        valid=torch.stack([s.valid for s in samples]),
        clip=[s.clip for s in samples],
        t=[s.t for s in samples],
    )


def driving_index(num_frames: int, generator: torch.Generator, min_offset: int = 60) -> int:
    """0-based driving index t: uniform over t > min_offset, or over the second half of a short clip."""
    if num_frames < 2:
        raise InputError(f"A clip needs at least 2 frames to sample a driving pair, it has {num_frames}")
    low = min_offset + 1 if num_frames - 1 > min_offset else max(1, num_frames // 2)
    return int(torch.randint(low, num_frames, (1,), generator=generator).item())


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator ``dataset[index]`` uses: a pure function of (seed, epoch, index)."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def fit_frame(frame: np.ndarray, size: int, fit: str = "resize") -> np.ndarray:
    """Bring an (H, W, 3) uint8 frame to (size, size, 3): plain resize (as the paper), centre crop or pad."""
    if fit not in FIT_MODES:
        raise InputError(f"Unknown fit mode {fit!r}; choose one of {', '.join(FIT_MODES)}")
    h, w = frame.shape[:2]
    if fit == "crop" and h != w:
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        frame = frame[y0 : y0 + side, x0 : x0 + side]
    elif fit == "pad" and h != w:
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        frame = cv2.copyMakeBorder(frame, top, side - h - top, left, side - w - left, cv2.BORDER_REPLICATE)
    if frame.shape[0] == size and frame.shape[1] == size:
        return np.ascontiguousarray(frame)
    shrinking = frame.shape[0] > size or frame.shape[1] > size
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))).float().div_(255.0)


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"Cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- SynthRunway clips


@dataclass(frozen=True)
class ClipMeta:
    seed: int
    index: int
    split: str
    size: int
    num_frames: int
    fps: float
    joint_names: tuple[str, ...]


@dataclass(frozen=True)
class SynthRunwayClip:
    """A SynthRunway clip on disk; frames are read lazily, the ground-truth arrays are memory-mapped."""

    path: Path
    meta: ClipMeta
    flow: np.ndarray  # (F-1, S, S, 2) float16: frame_t(x) ≈ frame_{t-1}(x + flow[t-1](x))
    visible: np.ndarray  # (F-1, S, S) bool
    mask: np.ndarray  # (F, S, S) bool
    joints: np.ndarray  # (F, J, 2) float32 pixels

    @property
    def fps(self) -> float:
        return self.meta.fps

    @property
    def name(self) -> str:
        return self.path.name

    def __len__(self) -> int:
        return self.meta.num_frames

    def frame(self, t: int) -> np.ndarray:
        """Frame t as (S, S, 3) uint8 RGB."""
        if not 0 <= t < len(self):
            raise IndexError(f"frame {t} out of range for {self.path} ({len(self)} frames)")
        image = _read_rgb(self.path / "frames" / f"{t:05d}.png")
        if image.shape[:2] != (self.meta.size, self.meta.size):
            raise InputError(
                f"{self.path}/frames/{t:05d}.png is {image.shape[1]}x{image.shape[0]}, expected "
                f"{self.meta.size}x{self.meta.size}"
            )
        return image

    def frames(self) -> Iterator[np.ndarray]:
        for t in range(len(self)):
            yield self.frame(t)


def load_clip(path: Path | str) -> SynthRunwayClip:
    """Open a SynthRunway clip folder (``meta.json``, ``frames/``, ``flow.npy``, ...)."""
    path = Path(path)
    try:
        raw = json.loads((path / "meta.json").read_text())
        meta = ClipMeta(
            seed=int(raw["seed"]),
            index=int(raw["index"]),
            split=str(raw["split"]),
            size=int(raw["size"]),
            num_frames=int(raw["num_frames"]),
            fps=float(raw["fps"]),
            joint_names=tuple(raw["joint_names"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"Cannot read {path / 'meta.json'}: {error}") from error
    arrays = {}
    n, s = meta.num_frames, meta.size
    expected = {
        "flow": (n - 1, s, s, 2),
        "visible": (n - 1, s, s),
        "mask": (n, s, s),
        "joints": (n, len(meta.joint_names), 2),
    }
    for name, shape in expected.items():
        file = path / f"{name}.npy"
        try:
            arrays[name] = np.load(file, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise InputError(f"Cannot read {file}: {error}") from error
        if arrays[name].shape != shape:
            raise InputError(f"{file} has shape {arrays[name].shape}, expected {shape}")
    if n < 2:
        raise InputError(f"{path} has {n} frames; a clip needs at least 2")
    return SynthRunwayClip(path=path, meta=meta, **arrays)


def _resize_flow(flow: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample a flow field (and its validity) to size x size; vectors scale with the image."""
    h, w = flow.shape[:2]
    if (h, w) == (size, size):
        return flow, valid
    scaled = cv2.resize(flow, (size, size), interpolation=cv2.INTER_LINEAR) * np.array([size / w, size / h])
    cover = cv2.resize(valid.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return scaled.astype(np.float32), cover >= 0.999


class _SkippingDataset(Dataset):
    """Shared sampling: generator per (seed, epoch, index), skip unreadable clips with a warning."""

    seed: int
    epoch: int
    names: list[str]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> VideoSample:
        return self.sample(index, sample_generator(self.seed, self.epoch, index))

    def sample(self, index: int, generator: torch.Generator) -> VideoSample:
        """The sample for ``index``; a clip that cannot be read is skipped for the next one."""
        if len(self) == 0:
            raise InputError("The dataset is empty")
        errors = []
        for attempt in range(min(MAX_SKIPS, len(self))):
            clip_index = (index + attempt) % len(self)
            try:
                return self._sample(clip_index, generator)
            except InputError as error:
                warnings.warn(f"Skipping clip {self.names[clip_index]}: {error}", stacklevel=2)
                errors.append(str(error))
        raise InputError(f"{len(errors)} clips in a row could not be read; last error: {errors[-1]}")

    def __len__(self) -> int:
        return len(self.names)

    def _sample(self, clip_index: int, generator: torch.Generator) -> VideoSample:
        raise NotImplementedError


class SynthRunwayDataset(_SkippingDataset):
    """SynthRunway clips under ``root`` (folders with ``meta.json``), with exact flow and visibility.

    ``split`` ("train"/"test"/None) keeps clips of that split (decided by seed, see ``training.synthrunway``);
    ``size`` resamples frames and flow when it differs from the generated size.
    """

    def __init__(
        self,
        root: Path | str,
        size: int | None = None,
        split: str | None = None,
        min_offset: int = 60,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"SynthRunway folder not found: {self.root}")
        self.size, self.min_offset, self.seed, self.epoch = size, min_offset, seed, 0
        self.clips: list[SynthRunwayClip] = []
        for folder in sorted(p.parent for p in self.root.glob("*/meta.json")):
            try:
                clip = load_clip(folder)
            except InputError as error:
                warnings.warn(f"Skipping {folder}: {error}", stacklevel=2)
                continue
            if split is None or clip.meta.split == split:
                self.clips.append(clip)
        if not self.clips:
            raise InputError(f"No SynthRunway clips{f' of split {split!r}' if split else ''} in {self.root}")
        self.names = [clip.name for clip in self.clips]

    def _sample(self, clip_index: int, generator: torch.Generator) -> VideoSample:
        clip = self.clips[clip_index]
        t = driving_index(len(clip), generator, self.min_offset)
        size = self.size or clip.meta.size
        frames = [fit_frame(clip.frame(i), size) for i in (0, t - 1, t)]
        flow, valid = _resize_flow(
            np.asarray(clip.flow[t - 1], np.float32), np.asarray(clip.visible[t - 1]), size
        )
        return VideoSample(
            source=to_tensor(frames[0]),
            driving=to_tensor(frames[2]),
            previous=to_tensor(frames[1]),
            flow=torch.from_numpy(np.ascontiguousarray(flow)),
            valid=torch.from_numpy(valid[None].astype(np.float32)),
            clip=clip.name,
            t=t,
        )


# --------------------------------------------------------------------------- real videos


@dataclass(frozen=True)
class TrainingVideo:
    path: Path  # a video file, or a folder of frames
    num_frames: int
    width: int
    height: int
    fps: float
    frame_files: tuple[Path, ...] = ()  # for folders of frames

    @property
    def name(self) -> str:
        return self.path.stem if self.path.is_file() else self.path.name


def probe_training_video(path: Path | str, min_frames: int = 2) -> TrainingVideo:
    """Check a video file or a folder of frames and read its length and size; InputError names the file."""
    path = Path(path)
    if path.is_dir():
        files = tuple(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        if not files:
            raise InputError(f"The frame folder {path} has no frames")
        first, last = _read_rgb(files[0]), _read_rgb(files[-1])
        if first.shape != last.shape:
            raise InputError(
                f"Mixed frame sizes in {path}: {files[0].name} is {first.shape[1]}x{first.shape[0]}, "
                f"{files[-1].name} is {last.shape[1]}x{last.shape[0]}"
            )
        info = TrainingVideo(path, len(files), first.shape[1], first.shape[0], 30.0, files)
    else:
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise InputError(f"Cannot open video {path} (unreadable or not a video)")
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            fps = float(capture.get(cv2.CAP_PROP_FPS)) or 30.0
            ok, frame = capture.read()
        finally:
            capture.release()
        if count <= 0 or not ok:
            raise InputError(f"The video {path} has no readable frames")
        info = TrainingVideo(path, count, frame.shape[1], frame.shape[0], fps)
    if info.num_frames < min_frames:
        raise InputError(
            f"The video {path} is too short: {info.num_frames} frames, need at least {min_frames}"
        )
    return info


def read_training_frames(info: TrainingVideo, indices: list[int]) -> dict[int, np.ndarray]:
    """Decode only the requested frames (RGB uint8), seeking forward; InputError names the file."""
    wanted = sorted(set(indices))
    if wanted and (wanted[0] < 0 or wanted[-1] >= info.num_frames):
        raise InputError(f"Frame {wanted[-1]} requested from {info.path}, which has {info.num_frames} frames")
    frames: dict[int, np.ndarray] = {}
    if info.frame_files:
        for i in wanted:
            frames[i] = _read_rgb(info.frame_files[i])
    else:
        capture = cv2.VideoCapture(str(info.path))
        try:
            if not capture.isOpened():
                raise InputError(f"Cannot open video {info.path}")
            position = 0
            for i in wanted:
                if i - position > 30:
                    capture.set(cv2.CAP_PROP_POS_FRAMES, i)
                    position = i
                while position < i:
                    if not capture.grab():
                        raise InputError(f"Cannot decode frame {position} of {info.path}")
                    position += 1
                ok, frame = capture.read()
                if not ok:
                    raise InputError(f"Cannot decode frame {i} of {info.path}")
                position += 1
                frames[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()
    for i, frame in frames.items():
        if frame.shape[:2] != (info.height, info.width):
            raise InputError(
                f"Mixed frame sizes in {info.path}: frame {i} is {frame.shape[1]}x{frame.shape[0]}, "
                f"the first is {info.width}x{info.height}"
            )
    return frames


def _list_names(list_file: Path) -> list[str]:
    """Names in a split list (``fashion_train.txt``: one URL or file name per line) -> file names."""
    names = []
    for line in Path(list_file).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(Path(unquote(urlparse(line).path) if "://" in line else line).name)
    return names


def find_videos(root: Path | str, list_file: Path | str | None = None) -> list[Path]:
    """Videos (files) and frame folders under ``root``, optionally only those named in ``list_file``."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"Video folder not found: {root}")
    entries = sorted(
        p
        for p in root.iterdir()
        if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        or (p.is_dir() and any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()))
    )
    if list_file is None:
        return entries
    by_name = {p.name: p for p in entries} | {p.stem: p for p in entries}
    names = _list_names(Path(list_file))
    found = [by_name[n] if n in by_name else by_name.get(Path(n).stem) for n in names]
    missing = [n for n, p in zip(names, found) if p is None]
    if missing:
        warnings.warn(
            f"{len(missing)} of {len(names)} videos listed in {list_file} are not in {root} "
            f"(e.g. {missing[0]})",
            stacklevel=2,
        )
    return [p for p in found if p is not None]


class VideoFolderDataset(_SkippingDataset):
    """Real videos in the FashionVideo layout: ``.mp4`` files (or folders of frames) under ``root``.

    Frames are decoded lazily (three per sample) and fitted to ``size`` (``fit``: resize as in the paper,
    crop or pad). The backward flow of (D_{t-1}, D_t) is estimated with DIS at the model size and kept in
    ``flow_cache`` when given (see ``precompute_flow``); ``valid`` is its forward-backward consistency mask.
    Unreadable, empty or too short videos are skipped with a warning when the dataset is built.
    """

    def __init__(
        self,
        root: Path | str,
        size: int = 256,
        list_file: Path | str | None = None,
        fit: str = "resize",
        min_offset: int = 60,
        flow_cache: Path | str | None = None,
        dis_preset: str = "medium",
        seed: int = 0,
    ) -> None:
        if fit not in FIT_MODES:
            raise InputError(f"Unknown fit mode {fit!r}; choose one of {', '.join(FIT_MODES)}")
        self.size, self.fit, self.min_offset, self.seed, self.epoch = size, fit, min_offset, seed, 0
        self.flow_cache, self.dis_preset = (Path(flow_cache) if flow_cache else None), dis_preset
        self.videos: list[TrainingVideo] = []
        for path in find_videos(root, list_file):
            try:
                self.videos.append(probe_training_video(path))
            except InputError as error:
                warnings.warn(f"Skipping {path}: {error}", stacklevel=2)
        if not self.videos:
            raise InputError(f"No readable videos in {root}")
        self.names = [info.name for info in self.videos]

    def cache_for(self, info: TrainingVideo) -> FlowCache | None:
        if self.flow_cache is None:
            return None
        return FlowCache(self.flow_cache, f"{info.name}_{self.size}_{self.fit}_{self.dis_preset}")

    def frames(self, clip_index: int, indices: list[int]) -> dict[int, np.ndarray]:
        """Frames of one video, fitted to the model size."""
        raw = read_training_frames(self.videos[clip_index], indices)
        return {i: fit_frame(frame, self.size, self.fit) for i, frame in raw.items()}

    def flow(self, clip_index: int, t: int, previous: np.ndarray, current: np.ndarray) -> FlowEstimate:
        cache = self.cache_for(self.videos[clip_index])
        if cache is None:
            return estimate_backward_flow(previous, current, self.dis_preset)
        return cache.get_or_compute(t, previous, current, self.dis_preset)

    def _sample(self, clip_index: int, generator: torch.Generator) -> VideoSample:
        info = self.videos[clip_index]
        t = driving_index(info.num_frames, generator, self.min_offset)
        frames = self.frames(clip_index, [0, t - 1, t])
        estimate = self.flow(clip_index, t, frames[t - 1], frames[t])
        return VideoSample(
            source=to_tensor(frames[0]),
            driving=to_tensor(frames[t]),
            previous=to_tensor(frames[t - 1]),
            flow=torch.from_numpy(np.ascontiguousarray(estimate.flow, dtype=np.float32)),
            valid=torch.from_numpy(estimate.valid[None].astype(np.float32)),
            clip=info.name,
            t=t,
        )

    def iter_frames(self, clip_index: int) -> Iterator[np.ndarray]:
        """All frames of one video in order (fitted), decoded one at a time: for evaluation."""
        info = self.videos[clip_index]
        if info.frame_files:
            for file in info.frame_files:
                yield fit_frame(_read_rgb(file), self.size, self.fit)
            return
        capture = cv2.VideoCapture(str(info.path))
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                yield fit_frame(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), self.size, self.fit)
        finally:
            capture.release()


def precompute_flow(dataset: VideoFolderDataset, clip_index: int) -> int:
    """Fill the flow cache for every pair (t-1, t) of one video that sampling can draw; returns pairs done."""
    info = dataset.videos[clip_index]
    cache = dataset.cache_for(info)
    if cache is None:
        raise InputError("precompute_flow needs a dataset with a flow_cache folder")
    low = dataset.min_offset + 1 if info.num_frames - 1 > dataset.min_offset else max(1, info.num_frames // 2)
    previous, done = None, 0
    for t, frame in enumerate(dataset.iter_frames(clip_index)):
        if t >= low and previous is not None and cache.load(t) is None:
            cache.store(t, estimate_backward_flow(previous, frame, dataset.dis_preset))
            done += 1
        previous = frame
    return done


def _precompute_worker(args: tuple[VideoFolderDataset, int]) -> tuple[str, int, str]:
    dataset, index = args
    cv2.setNumThreads(1)
    try:
        return dataset.names[index], precompute_flow(dataset, index), ""
    except InputError as error:
        return dataset.names[index], 0, str(error)


def _run_jobs(jobs: list[tuple[VideoFolderDataset, int]], workers: int) -> Iterator[tuple[str, int, str]]:
    if workers <= 1:
        yield from map(_precompute_worker, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_precompute_worker, jobs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check real training videos and precompute their DIS flow.")
    parser.add_argument("--root", type=Path, required=True, help="folder of .mp4 videos or frame folders")
    parser.add_argument("--list", type=Path, default=None, help="split list, e.g. fashion_train.txt")
    parser.add_argument("--size", type=int, default=512, help="model size (frames are fitted to size x size)")
    parser.add_argument("--fit", choices=FIT_MODES, default="resize")
    parser.add_argument("--min-offset", type=int, default=60, help="driving frames have t > min-offset")
    parser.add_argument("--cache", type=Path, default=None, help="flow cache folder")
    parser.add_argument("--preset", default="medium", help="DIS preset: ultrafast, fast, medium")
    parser.add_argument("--precompute-flow", action="store_true", help="compute and cache DIS flow")
    parser.add_argument("--check", action="store_true", help="only probe the videos and report bad ones")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = VideoFolderDataset(
                args.root, args.size, args.list, args.fit, args.min_offset, args.cache, args.preset
            )
        for warning in caught:
            print(f"warning: {warning.message}", file=sys.stderr)
        print(f"{len(dataset)} readable videos, {sum(v.num_frames for v in dataset.videos)} frames")
        if args.check or not args.precompute_flow:
            return 0
        if args.cache is None:
            raise InputError("--precompute-flow needs --cache FOLDER")
        jobs = [(dataset, i) for i in range(len(dataset))]
        pairs = 0
        with tqdm(total=len(jobs), unit="video", desc="DIS flow") as bar:
            for name, done, error in _run_jobs(jobs, args.workers):
                if error:
                    print(f"warning: skipped {name}: {error}", file=sys.stderr)
                pairs += done
                bar.update(1)
        print(f"{pairs} flow pairs written to {args.cache}")
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
