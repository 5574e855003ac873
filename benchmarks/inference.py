"""The inference benchmark: ``python -m benchmarks.inference [--json FILE] [--presets ...] [--table] [--levers]``.

Sections of one run (each measurement in a fresh process, so peak RSS is its own):

* **fast vs reference** (per preset, e.g. ``internet-512``): the optimised path
  (:mod:`internet.speedups.inference_copy`) and the plain float32 eager form (``model(source, driving)`` per
  frame) timed *interleaved in the same process*, with wall and process (CPU) time, the ratio per round, the
  max abs diff / PSNR between their outputs, GFLOPs/frame, the achieved fraction of the machine's measured
  conv throughput and (``--profile``) the top operators; ``--levers`` adds one row per optimisation measured
  on its own; both run with the allocator settings of the app and CLI (:mod:`internet.speedups.memory`);
* **vs the original environment** (``vs_original_environment``): the fast path with those settings against
  the reference with the default allocator, each in its own process, timed in turns;
* **table**: ms/frame at batch 1 and at the best batch, peak RSS, parameters, GFLOPs/frame per preset, with
  a FOMM-style reference network (64-128-256 channels, 6 residual blocks at 1/4, dense motion at 1/4)
  timed in the same run, since absolute times on shared machines are noise;
* **pipeline**: the pose rig end to end at 512² (``pose_rig_512``: result video and anchors JSON, the warm
  median, with the cold render and the sequential reference beside it; ``pose_rig_512_all_outputs``: also
  the side-by-side and overlay videos) and peak RSS of a 60- vs a 600-frame render (``memory``), from
  :mod:`benchmarks.pipeline`;
* **gpu** (when CUDA is present; ``--gpu-only`` runs this section alone): frames/s of the fast path per batch
  in float32 and bf16, then ``torch.compile`` at batch 1 and the best batch, beside the plain float32 eager
  form, with each precision's max abs diff from it and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.reference import FastINTERNet, FastOptions, compare, default_batch
from internet.config import load_config
from internet.layers import ConvBlock, DownBlock, ResBlock, UpBlock
from internet.model import INTERNet
from internet.speedups.inference_copy import prepack_convolutions
from internet.speedups.memory import THP_VARIABLE, enable_huge_pages, huge_pages_enabled, retain_freed_memory


@dataclass
class BenchResult:
    name: str
    device: str
    image_size: int
    params_m: float
    gflops_per_frame: float
    ms_per_frame_batch1: float
    best_batch: int
    ms_per_frame_best: float
    peak_rss_mb: float
    threads: int


class FommStyleReference(nn.Module):
    """A FOMM-shaped generator + dense motion for timing only (random weights, no claims on quality)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        cfg = load_config("internet-512" if size == 512 else "internet-256")
        self.stage1 = INTERNet(cfg)  # detector + dense motion have FOMM's U-Net shapes
        self.encoder = nn.Sequential(ConvBlock(3, 64, 7), DownBlock(64, 128), DownBlock(128, 256))
        self.bottleneck = nn.Sequential(*[ResBlock(256) for _ in range(6)])
        self.decoder = nn.Sequential(UpBlock(256, 128), UpBlock(128, 64), nn.Conv2d(64, 3, 7, padding=3))

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        src_anchors = self.stage1.detect(source)
        drv_anchors = self.stage1.detect(driving)
        motion = self.stage1.motion(source, src_anchors, drv_anchors)
        feats = self.encoder(source)
        warped = nn.functional.grid_sample(feats, motion.flows[0], align_corners=True) * motion.confidences[0]
        return torch.sigmoid(self.decoder(self.bottleneck(warped)))


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _bench_one(name: str, device: str, batches: tuple[int, ...], repeats: int, queue) -> None:
    torch.manual_seed(0)
    if name.startswith("fomm-style-"):
        size = int(name.rsplit("-", 1)[1])
        model = FommStyleReference(size).eval().to(device)
    else:
        model = INTERNet(load_config(name)).eval().to(device)
        size = model.config.image_size
    params = sum(p.numel() for p in model.parameters()) / 1e6

    def run(b: int):
        src = torch.rand(1, 3, size, size, device=device).expand(b, -1, -1, -1)
        drv = torch.rand(b, 3, size, size, device=device)

        def call():
            with torch.inference_mode():
                model(src, drv)
            if device == "cuda":
                torch.cuda.synchronize()

        return call

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(torch.rand(1, 3, size, size, device=device), torch.rand(1, 3, size, size, device=device))
    gflops = counter.get_total_flops() / 1e9
    per_batch = {b: _time(run(b), repeats) / b * 1000 for b in batches}
    best = min(per_batch, key=per_batch.get)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(
        BenchResult(
            name,
            device,
            size,
            round(params, 2),
            round(gflops, 2),
            round(per_batch[1], 1),
            best,
            round(per_batch[best], 1),
            round(rss, 1),
            torch.get_num_threads(),
        )
    )


def _in_child(target, *args):
    """Run ``target(*args, queue)`` in a fresh spawned process (so its peak RSS is its own) and return what it
    puts on the queue; a child that dies without answering (a crash, the OOM killer) raises instead of hanging."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    try:
        while True:
            try:
                return queue.get(timeout=1.0)
            except Empty:
                if proc.is_alive():
                    continue
            try:  # it ended: whatever it put is in the pipe by now
                return queue.get(timeout=1.0)
            except Empty:
                raise RuntimeError(f"{target.__name__} died (exit code {proc.exitcode})") from None
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()


def bench(name: str, device: str = "cpu", batches: tuple[int, ...] = (1, 2, 4), repeats: int = 3) -> BenchResult:
    """Run one preset in a fresh process so that its peak RSS is its own."""
    return _in_child(_bench_one, name, device, batches, repeats)


# ------------------------------------------------------------------------------------------------------
# Fast path vs the float32 eager reference, interleaved in one process


@dataclass
class LeverResult:
    """One execution variant of the same model, timed in the same rounds as the reference."""

    name: str
    ms_per_frame: float  # best round, wall clock
    cpu_ms_per_frame: float  # best round, process CPU time (all threads)
    ratio: float  # median over interleaved chunks of (this / reference), wall clock
    cpu_ratio: float
    max_abs_diff: float
    psnr_db: float


@dataclass
class FastResult:
    """``internet-512``-style entry of the report: the fast path next to its reference."""

    name: str
    device: str
    image_size: int
    batch: int
    frames: int
    rounds: int
    threads: int
    ms_per_frame: float  # fast path, steady state per frame (source prepared once per video, not included)
    reference_ms_per_frame: float  # model(source, driving_t) per frame, float32 eager
    ratio: float  # median of per-round ratios (wall)
    cpu_ms_per_frame: float
    reference_cpu_ms_per_frame: float
    cpu_ratio: float
    prepare_source_ms: float  # once per video in the fast path
    max_abs_diff: float
    psnr_db: float
    gflops_per_frame: float  # fast path: detect driving + motion + decode
    reference_gflops_per_frame: float  # reference: also the source anchors and encoding, every frame
    achieved_gflops: float
    peak_conv_gflops: float  # measured on this machine in the same process (best of several)
    peak_matmul_gflops: float
    fraction_of_peak: float  # achieved / peak conv
    peak_rss_mb: float
    huge_pages: bool  # torch's allocator used transparent huge pages in this run (both paths alike)
    levers: list[LeverResult] = field(default_factory=list)
    profile_top: list[dict] = field(default_factory=list)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - start[0], time.process_time() - start[1]


def machine_throughput(device: str = "cpu", repeats: int = 8) -> tuple[float, float]:
    """Best-of-``repeats`` GFLOP/s of a 2048² float32 matmul and of a 3×3 128→128 conv at 128² (NHWC)."""
    a, b = torch.rand(2048, 2048, device=device), torch.rand(2048, 2048, device=device)
    conv = nn.Conv2d(128, 128, 3, padding=1).to(device).eval().to(memory_format=torch.channels_last)
    prepack_convolutions(conv)  # the fastest form on CPU (a no-op elsewhere at run time)
    x = torch.rand(1, 128, 128, 128, device=device).contiguous(memory_format=torch.channels_last)
    best = []
    with torch.inference_mode():
        for fn, flops in ((lambda: a @ b, 2 * 2048**3), (lambda: conv(x), 2 * 128 * 128 * 9 * 128 * 128)):
            fn()
            fastest = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                if device == "cuda":
                    torch.cuda.synchronize()
                fastest = min(fastest, time.perf_counter() - t0)
            best.append(flops / fastest / 1e9)
    return best[0], best[1]


def _flops(fn) -> float:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn()
    return counter.get_total_flops() / 1e9


def _lever_options(batch: int, compile_: bool, all_levers: bool) -> dict[str, FastOptions]:
    """The variants timed next to the reference; the first is the fast path's default (``batch``)."""
    levers = {f"fast (channels_last, sub-pixel, pre-packed, batch {batch})": FastOptions(batch=batch)}
    if all_levers:
        other = 4 if batch == 1 else 1
        levers |= {
            "source once (NCHW, batch 1)": FastOptions(batch=1, channels_last=False, subpixel=False, prepack=False),
            "source once + channels_last (batch 1)": FastOptions(batch=1, subpixel=False, prepack=False),
            "source once + sub-pixel up-convolutions (NCHW, batch 1)": FastOptions(
                batch=1, channels_last=False, prepack=False
            ),
            "source once + channels_last + sub-pixel (batch 1)": FastOptions(batch=1, prepack=False),
            "source once + pre-packed weights (NCHW, batch 1)": FastOptions(
                batch=1, channels_last=False, subpixel=False
            ),
            "source once + batch 4 (NCHW)": FastOptions(batch=4, channels_last=False, subpixel=False, prepack=False),
            f"fast with batch {other}": FastOptions(batch=other),
            f"bf16 autocast (fast, batch {batch})": FastOptions(batch=batch, bf16=True),
        }
    if compile_:
        levers[f"torch.compile (fast, batch {batch})"] = FastOptions(batch=batch, compile=True)
    return levers


def _model_and_frames(name: str, device: str, frames: int) -> tuple[INTERNet, torch.Tensor, torch.Tensor]:
    """The preset with seeded random weights, a source and ``frames`` driving frames (the same in every process)."""
    torch.manual_seed(0)
    model = INTERNet(load_config(name)).eval().to(device)
    size = model.config.image_size
    gen = torch.Generator().manual_seed(1)
    source = torch.rand(1, 3, size, size, generator=gen).to(device)
    driving = torch.rand(frames, 3, size, size, generator=gen).to(device)
    return model, source, driving


def _fast_one(name: str, device: str, frames: int, rounds: int, batch: int | None, flags: dict, queue) -> None:
    retain_freed_memory()  # as the app and the CLI's model path (both paths alike here)
    model, source, driving = _model_and_frames(name, device, frames)
    size = model.config.image_size
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    peak_mm, peak_conv = machine_throughput(device)

    def reference(frames: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            out = torch.cat([model(source, d[None]).prediction for d in frames])
        sync()
        return out

    batch = batch or default_batch(size)  # the fast path's own choice for this size
    levers = _lever_options(batch, flags["compile"], flags["levers"])
    fast = {key: FastINTERNet(model, options) for key, options in levers.items()}
    states = {key: f.prepare_source(source) for key, f in fast.items()}
    runs = {"reference": reference} | {
        key: (lambda d, f=f, s=states[key]: (f.render(s, d), sync())[0]) for key, f in fast.items()
    }
    outputs = {key: run(driving) for key, run in runs.items()}  # warm-up (and compilation)
    # Interleaved in chunks of the largest batch of any variant (one frame at 512² by default): every variant
    # renders the same chunk back to back, so the machine's slow and fast phases (seconds long on shared
    # VMs) hit them alike. Times are summed per round; the ratio is the median over chunks.
    chunk = max(f.options.batch for f in fast.values())
    times: dict[str, list[tuple[float, float]]] = {key: [] for key in runs}
    chunk_ratios: dict[str, list[tuple[float, float]]] = {key: [] for key in runs}
    for _ in range(rounds):
        spent = {key: (0.0, 0.0) for key in runs}
        for first in range(0, frames, chunk):
            frames_chunk = driving[first : first + chunk]
            took = {}
            for key, run in runs.items():
                start = _clock()
                run(frames_chunk)
                took[key] = _since(start)
                spent[key] = (spent[key][0] + took[key][0], spent[key][1] + took[key][1])
            for key in runs:
                chunk_ratios[key].append(tuple(t / r for t, r in zip(took[key], took["reference"])))
        for key in runs:
            times[key].append(spent[key])
    default = next(iter(fast))
    start = _clock()
    for _ in range(3):
        fast[default].prepare_source(source)
    sync()
    prepare_ms = _since(start)[0] / 3 * 1000

    def per_frame(key: str, index: int) -> float:
        return min(t[index] for t in times[key]) / frames * 1000

    def ratio(key: str, index: int) -> float:
        return statistics.median(r[index] for r in chunk_ratios[key])

    lever_rows = []
    for key in fast:
        agreement = compare(outputs[key], outputs["reference"])
        lever_rows.append(
            LeverResult(key, round(per_frame(key, 0), 1), round(per_frame(key, 1), 1), round(ratio(key, 0), 3),
                        round(ratio(key, 1), 3), agreement.max_abs_diff, round(agreement.psnr_db, 2))
        )  # fmt: skip
    f = fast[default]
    # FlopCounterMode does not know oneDNN's packed-weight convolution: count the same network unpacked.
    unpacked = FastINTERNet(model, dataclasses.replace(levers[default], prepack=False))
    gflops = _flops(lambda: unpacked.model.animate(states[default], driving[:1]))
    reference_gflops = _flops(lambda: model(source, driving[:1]))
    achieved = gflops / (per_frame(default, 0) / 1000)
    profile = _profile(f, states[default], driving[:batch]) if flags["profile"] else []
    best = lever_rows[0]
    result = FastResult(
        name=name,
        device=device,
        image_size=size,
        batch=batch,
        frames=frames,
        rounds=rounds,
        threads=torch.get_num_threads(),
        ms_per_frame=best.ms_per_frame,
        reference_ms_per_frame=round(per_frame("reference", 0), 1),
        ratio=best.ratio,
        cpu_ms_per_frame=best.cpu_ms_per_frame,
        reference_cpu_ms_per_frame=round(per_frame("reference", 1), 1),
        cpu_ratio=best.cpu_ratio,
        prepare_source_ms=round(prepare_ms, 1),
        max_abs_diff=best.max_abs_diff,
        psnr_db=best.psnr_db,
        gflops_per_frame=round(gflops, 2),
        reference_gflops_per_frame=round(reference_gflops, 2),
        achieved_gflops=round(achieved, 1),
        peak_conv_gflops=round(peak_conv, 1),
        peak_matmul_gflops=round(peak_mm, 1),
        fraction_of_peak=round(achieved / peak_conv, 3),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        huge_pages=huge_pages_enabled(),
        levers=lever_rows,
        profile_top=profile,
    )
    queue.put(result)


def _profile(fast: FastINTERNet, state, driving: torch.Tensor, top: int = 12) -> list[dict]:
    """Top operators by self CPU time for one batch of the fast path (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fast.render(state, driving)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1000, 1),
         "percent": round(100 * e.self_cpu_time_total / total, 1), "calls": e.count}
        for e in events[:top]
    ]  # fmt: skip


def bench_fast(
    name: str, device: str = "cpu", frames: int = 8, rounds: int = 3, batch: int | None = None, *,
    levers: bool = False, profile: bool = False, compile_: bool = False,
) -> FastResult:  # fmt: skip
    """Fast path vs float32 eager reference for one preset, in a fresh process."""
    flags = {"levers": levers, "profile": profile, "compile": compile_}
    return _in_child(_fast_one, name, device, frames, rounds, batch, flags)


# ------------------------------------------------------------------------------------------------------
# The fast path as the app runs it vs the plain eager reference with the default allocator

ALLOCATOR_VARIABLES = (THP_VARIABLE, "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


@dataclass
class EnvironmentResult:
    """Each path in its own process and allocator set-up, timed chunk by chunk in turns (never at once)."""

    name: str
    frames: int
    rounds: int
    ms_per_frame: float  # fast path, with the allocator settings of the app and CLI (best round)
    reference_ms_per_frame: float  # the eager reference with glibc's and torch's default allocator
    ratio: float  # median over chunks of (fast / reference), wall clock
    cpu_ratio: float
    max_abs_diff: float  # the two processes' outputs (same seeds: same weights and frames)
    fast_environment: dict  # the allocator variables each process saw
    reference_environment: dict


def _environment_worker(name: str, device: str, frames: int, role: str, conn) -> None:
    """Build the model and frames (:func:`_model_and_frames`), warm up, send the outputs, then
    render the chunks the parent asks for, one at a time, replying with (wall, CPU) seconds."""
    if role == "fast":
        retain_freed_memory()  # as the app and the CLI's model path; the reference keeps glibc's defaults
    model, source, driving = _model_and_frames(name, device, frames)
    if role == "fast":
        fast = FastINTERNet(model)
        state = fast.prepare_source(source)

        def run(chunk: torch.Tensor) -> torch.Tensor:
            return fast.render(state, chunk)
    else:

        def run(chunk: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return torch.cat([model(source, d[None]).prediction for d in chunk])

    conn.send((run(driving).float().cpu(), {k: os.environ.get(k) for k in ALLOCATOR_VARIABLES}))
    while (message := conn.recv()) is not None:
        first, count = message
        start = _clock()
        run(driving[first : first + count])
        conn.send(_since(start))


def bench_environments(name: str, frames: int = 8, rounds: int = 3, device: str = "cpu") -> EnvironmentResult:
    """The fast path as the app and CLI run it (their allocator settings, :mod:`internet.speedups.memory`) vs
    the plain eager reference as a plain PyTorch program runs it (default allocator). The allocator settings are
    per process, so each path has a process of its own; the parent asks them for one frame at a time, in turns,
    so they never compete for the CPUs and the machine's slow and fast phases hit both alike (as in
    :func:`bench_fast`)."""
    ctx = mp.get_context("spawn")
    fast_env = dict(os.environ)  # huge pages as main() set them up; the worker keeps freed memory itself
    reference_env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_VARIABLES}
    workers: dict[str, tuple] = {}
    try:
        for role, env in (("fast", fast_env), ("reference", reference_env)):
            parent_conn, child_conn = ctx.Pipe()
            saved = dict(os.environ)
            os.environ.clear()
            os.environ.update(env)
            try:  # a spawned child inherits the environment as it is at start()
                proc = ctx.Process(target=_environment_worker, args=(name, device, frames, role, child_conn))
                proc.start()
            finally:
                os.environ.clear()
                os.environ.update(saved)
            child_conn.close()
            workers[role] = (proc, parent_conn)

        def ask(role: str, message):
            proc, conn = workers[role]
            try:
                if message is not None:
                    conn.send(message)
                return conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError):
                raise RuntimeError(f"the {role} process died (exit code {proc.exitcode})") from None

        (fast_out, fast_vars), (ref_out, ref_vars) = ask("fast", None), ask("reference", None)
        times = {role: [] for role in workers}
        chunk_ratios = []
        for _ in range(rounds):
            spent = {role: (0.0, 0.0) for role in workers}
            for first in range(frames):
                took = {role: ask(role, (first, 1)) for role in workers}
                for role in workers:
                    spent[role] = tuple(a + b for a, b in zip(spent[role], took[role]))
                chunk_ratios.append(tuple(f / r for f, r in zip(took["fast"], took["reference"])))
            for role in workers:
                times[role].append(spent[role])
    finally:
        for proc, conn in workers.values():
            with contextlib.suppress(OSError):
                conn.send(None)
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()

    def per_frame(role: str) -> float:
        return round(min(t[0] for t in times[role]) / frames * 1000, 1)

    return EnvironmentResult(
        name=name,
        frames=frames,
        rounds=rounds,
        ms_per_frame=per_frame("fast"),
        reference_ms_per_frame=per_frame("reference"),
        ratio=round(statistics.median(r[0] for r in chunk_ratios), 3),
        cpu_ratio=round(statistics.median(r[1] for r in chunk_ratios), 3),
        max_abs_diff=compare(fast_out, ref_out).max_abs_diff,
        fast_environment=fast_vars,
        reference_environment=ref_vars,
    )


# ------------------------------------------------------------------------------------------------------
# GPU: frames/s at batch 1, the best batch, bf16 and torch.compile (never needed by CI)

GPU_BATCHES = (1, 4, 8, 16)


@dataclass
class AcceleratorResult:
    """Frames/s of the fast path on one device: per precision and batch, then ``torch.compile`` at batch 1 and at
    the best batch of that precision; the plain float32 eager form (batch 1) beside it."""

    name: str
    device: str
    device_name: str
    image_size: int
    reference_fps: float  # model(source, driving) per frame, float32 eager
    fps: dict[str, float | str] = field(default_factory=dict)  # "fp32/batch4" -> frames/s, or "failed: ..."
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # precision -> vs the reference (frame 0)
    compile_s: dict[str, float] = field(default_factory=dict)  # "bf16+compile/batch1" -> first call (compiling)
    peak_memory_mb: dict[str, float] = field(default_factory=dict)  # CUDA only: max allocated per row
    best: str | None = None
    best_fps: float | None = None
    realtime: bool = False  # best_fps >= 30


def _accelerator_one(name: str, device: str, batches: tuple[int, ...], compiled: bool, repeats: int, queue) -> None:
    torch.manual_seed(0)
    cuda = device == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = INTERNet(load_config(name)).eval().to(device)
    size = model.config.image_size
    source = torch.rand(1, 3, size, size, device=device)
    driving = torch.rand(max(batches), 3, size, size, device=device)
    with torch.no_grad():
        reference = model(source, driving[:1]).prediction.float()
        seconds = _time(lambda: (model(source, driving[:1]), sync()), repeats)
    result = AcceleratorResult(name, device, torch.cuda.get_device_name() if cuda else _cpu_name(), size,
                               round(1 / seconds, 2))  # fmt: skip

    def run(label: str, batch: int, options: FastOptions) -> None:
        key = f"{label}/batch{batch}"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        try:
            fast = FastINTERNet(model, options)
            state = fast.prepare_source(source)
            t0 = time.perf_counter()
            out = fast.render(state, driving[:batch])
            sync()
            if options.compile:
                result.compile_s[key] = round(time.perf_counter() - t0, 1)
            seconds = _time(lambda: (fast.render(state, driving[:batch]), sync()), repeats)
            result.fps[key] = round(batch / seconds, 2)
            result.max_abs_diff.setdefault(label, float((out[:1].float() - reference).abs().max()))
            if cuda:
                result.peak_memory_mb[key] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        except Exception as error:  # noqa: BLE001 - report, do not abort the benchmark
            result.fps[key] = f"failed: {type(error).__name__}: {str(error)[:80]}"
        print(f"  {name} {key}: {result.fps[key]}", flush=True)  # as it comes: a run cut short still shows these
        if cuda:
            torch.cuda.empty_cache()

    def best_batch(label: str) -> int:
        rows = {b: result.fps.get(f"{label}/batch{b}") for b in batches}
        numeric = {b: v for b, v in rows.items() if isinstance(v, float)}
        return max(numeric, key=numeric.get) if numeric else min(batches)

    for label, bf16 in (("fp32", False), ("bf16", True)):
        for batch in batches:
            run(label, batch, FastOptions(batch=batch, bf16=bf16))
    if compiled:  # compiling is slow (minutes at 512²): batch 1 and the best batch of each precision only
        for label, bf16 in (("fp32", False), ("bf16", True)):
            for batch in sorted({min(batches), best_batch(label)}):
                run(f"{label}+compile", batch, FastOptions(batch=batch, bf16=bf16, compile=True))
    numeric = {k: v for k, v in result.fps.items() if isinstance(v, float)}
    if numeric:
        result.best = max(numeric, key=numeric.get)
        result.best_fps = numeric[result.best]
        result.realtime = result.best_fps >= 30
    queue.put(result)


def bench_accelerator(
    name: str, device: str = "cuda", batches: tuple[int, ...] = GPU_BATCHES, compiled: bool = True, repeats: int = 5
) -> AcceleratorResult:
    """frames/s of the fast path on ``device`` (CUDA in practice) per batch and precision, in a fresh process."""
    return _in_child(_accelerator_one, name, device, tuple(batches), compiled, repeats)


def _print_accelerator(r: AcceleratorResult) -> None:
    print(f"{r.device_name} {r.name} {r.image_size}²: reference (fp32 eager, batch 1) {r.reference_fps} fps; "
          f"best {r.best}: {r.best_fps} fps{' (real time)' if r.realtime else ''}")  # fmt: skip
    for key, fps in r.fps.items():
        extra = f"  compile {r.compile_s[key]} s" if key in r.compile_s else ""
        memory = f"  {r.peak_memory_mb[key]:.0f} MB" if key in r.peak_memory_mb else ""
        print(f"  {key:<24} {fps if isinstance(fps, str) else f'{fps:8.2f} fps'}{memory}{extra}")
    print(f"  max |diff| vs the reference: { {k: f'{v:.1e}' for k, v in r.max_abs_diff.items()} }")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--presets", nargs="+", default=["internet-512"])
    parser.add_argument("--frames", type=int, default=8, help="driving frames per timed round (fast vs reference)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (fast vs reference)")
    parser.add_argument(
        "--batch", type=int, default=None, help="frames per forward in the fast path (default: its own)"
    )
    parser.add_argument("--levers", action="store_true", help="also time each optimisation on its own")
    parser.add_argument("--profile", action="store_true", help="attach the top operators of the fast path")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow first call)")
    parser.add_argument(
        "--no-original-environment",
        action="store_true",
        help="skip the fast path (app's allocator settings) vs the reference with the default allocator",
    )
    parser.add_argument("--table", action="store_true", help="also the per-preset table with the FOMM reference")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4], help="batches for --table")
    parser.add_argument("--repeats", type=int, default=3, help="repeats for --table")
    parser.add_argument("--no-reference", action="store_true", help="--table without the FOMM-style reference")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the pose-rig speed and memory runs")
    parser.add_argument("--pipeline-frames", type=int, default=60, help="frames of the pose-rig speed run")
    parser.add_argument("--pipeline-rounds", type=int, default=3, help="warm rounds of the pose-rig speed run")
    parser.add_argument("--rss", type=int, nargs="*", default=[60, 600], help="frame counts for peak memory")
    parser.add_argument("--gpu-only", action="store_true", help="only the GPU section (needs CUDA)")
    parser.add_argument("--gpu-batches", type=int, nargs="+", default=list(GPU_BATCHES), help="batches on the GPU")
    parser.add_argument("--gpu-no-compile", action="store_true", help="skip torch.compile on the GPU")
    args = parser.parse_args(argv)
    if args.gpu_only and not torch.cuda.is_available():
        parser.error("--gpu-only needs a CUDA device, and torch sees none")
    # Huge pages as the app and CLI ask for them: the measurements run in fresh child processes, which inherit the
    # variable (THP_MEM_ALLOC_ENABLE=0 beforehand measures without); the model's children also keep freed
    # memory (retain_freed_memory, MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ beforehand override it).
    huge_pages = enable_huge_pages()

    report: dict = {
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "platform": platform.platform(),
            "processor": _cpu_name(),
            "threads": torch.get_num_threads(),
            "load_average": _load_average(),
            "huge_pages": huge_pages,
        }
    }
    for name in [] if args.gpu_only else args.presets:
        fast = bench_fast(name, "cpu", args.frames, args.rounds, args.batch,
                          levers=args.levers, profile=args.profile, compile_=args.compile)  # fmt: skip
        report[name] = asdict(fast)
        _print_fast(fast)
        if not args.no_original_environment:
            versus = bench_environments(name, args.frames, args.rounds)
            report[name]["vs_original_environment"] = asdict(versus)
            print(f"  as the app runs it vs the reference with the default allocator (separate processes, in turns): "
                  f"{versus.ms_per_frame:.0f} vs {versus.reference_ms_per_frame:.0f} ms/frame, ×{versus.ratio:.2f} "
                  f"wall, ×{versus.cpu_ratio:.2f} CPU, max |diff| {versus.max_abs_diff:.1e}")  # fmt: skip
    if args.table and not args.gpu_only:
        report |= _table(args)
    if not args.no_pipeline and not args.gpu_only:
        report |= _pipeline(args)
    if torch.cuda.is_available():
        report["gpu"] = {}
        for name in args.presets:
            gpu = bench_accelerator(name, "cuda", tuple(args.gpu_batches), not args.gpu_no_compile)
            report["gpu"][name] = asdict(gpu)
            _print_accelerator(gpu)
    report["machine"]["load_average_end"] = _load_average()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _print_fast(r: FastResult) -> None:
    print(
        f"{r.name} {r.device} {r.image_size}²: fast {r.ms_per_frame:.0f} ms/frame vs reference "
        f"{r.reference_ms_per_frame:.0f} (×{r.ratio:.2f} wall, ×{r.cpu_ratio:.2f} CPU; prepare_source "
        f"{r.prepare_source_ms:.0f} ms once), max |diff| {r.max_abs_diff:.2e}, PSNR {r.psnr_db:.1f} dB, "
        f"{r.gflops_per_frame:.1f} GFLOPs/frame = {r.achieved_gflops:.0f} GFLOP/s = "
        f"{100 * r.fraction_of_peak:.0f}% of the measured conv peak ({r.peak_conv_gflops:.0f} GFLOP/s); "
        f"huge pages {'on' if r.huge_pages else 'off'}"
    )
    for lever in r.levers:
        print(f"  {lever.name:<46} {lever.ms_per_frame:8.0f} ms  ×{lever.ratio:.2f} wall  ×{lever.cpu_ratio:.2f} CPU"
              f"  max|diff| {lever.max_abs_diff:.1e}")  # fmt: skip
    for row in r.profile_top:
        print(f"  {row['op']:<34} {row['self_cpu_ms']:9.1f} ms {row['percent']:5.1f}%  ×{row['calls']}")


def _table(args) -> dict:
    names = list(args.presets)
    if not args.no_reference:
        names += sorted(
            {f"fomm-style-{load_config(n).image_size}" for n in args.presets} & {"fomm-style-256", "fomm-style-512"}
        )
    results = [bench(n, "cpu", tuple(sorted(set(args.batches) | {1})), args.repeats) for n in names]
    by_key = {(r.name, r.device): r for r in results}
    out: dict = {"results": [asdict(r) for r in results]}
    print(
        f"{'model':<16}{'dev':<6}{'size':>5}{'params M':>10}{'GFLOPs':>9}{'ms b=1':>9}{'best b':>8}"
        f"{'ms best':>9}{'RSS MB':>9}{'x FOMM':>8}"
    )
    for r in results:
        ref = by_key.get((f"fomm-style-{r.image_size}", r.device))
        ratio = r.ms_per_frame_batch1 / ref.ms_per_frame_batch1 if ref and not r.name.startswith("fomm") else None
        if ratio is not None:
            out.setdefault("ratios_vs_fomm_style", {})[f"{r.name}/{r.device}"] = round(ratio, 3)
        print(
            f"{r.name:<16}{r.device:<6}{r.image_size:>5}{r.params_m:>10.2f}{r.gflops_per_frame:>9.1f}"
            f"{r.ms_per_frame_batch1:>9.1f}{r.best_batch:>8}{r.ms_per_frame_best:>9.1f}{r.peak_rss_mb:>9.0f}"
            f"{'' if ratio is None else f'{ratio:8.2f}'}"
        )
    return out


def _pipeline(args) -> dict:
    """``pose_rig_512`` (end-to-end frames/s) and ``memory`` (peak RSS vs video length) entries."""
    from benchmarks import pipeline as bench_pipeline

    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        rows = {kind: bench_pipeline.measure("pose-rig", 512, args.pipeline_frames, "cpu", Path(tmp), kind,
                                             args.pipeline_rounds) for kind in bench_pipeline.OUTPUT_SETS}  # fmt: skip
        for row in rows.values():
            bench_pipeline.print_speed(row)
        # fps: the warm median with the result video (+ anchors JSON); the other figures beside it.
        out["pose_rig_512"] = {"fps": rows["result"].get("end_to_end_fps")} | rows["result"]
        out["pose_rig_512_all_outputs"] = {"fps": rows["all"].get("end_to_end_fps")} | rows["all"]
        memory = {f"rss_{n}_frames_mb": bench_pipeline.measure("pose-rig", 512, n, "cpu", Path(tmp)).get("peak_rss_mb")
                  for n in args.rss}  # fmt: skip
    values = list(memory.values())
    if len(values) >= 2 and all(values):
        memory["ratio"] = round(values[-1] / values[0], 3)
    out["memory"] = memory
    print(f"peak RSS, pose rig 512²: {memory}")
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
