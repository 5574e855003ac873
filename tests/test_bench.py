"""The pipeline benchmark reports what docs/performance.md quotes (tiny sizes); the process memory settings."""

from __future__ import annotations

import os
import sys

import pytest

from benchmarks import inference as bench_module
from benchmarks import pipeline as bench_pipeline


def test_pipeline_bench_row_has_cold_warm_and_both_pipelines(tmp_path):
    row = bench_pipeline.run_one("pose-rig", 64, 12, "cpu", tmp_path, outputs="result", rounds=1)
    assert row["frames"] == 12 and row["outputs"] == "result"
    assert row["cold_fps"] > 0 and row["end_to_end_fps"] > 0 and row["peak_rss_mb"] > 50
    assert row["chosen"] in ("sequential", "threaded") and row["default"] in ("sequential", "threaded")
    assert len(row["sequential_fps"]) == len(row["threaded_fps"]) == 1
    assert row["end_to_end_fps"] == row[f"{row['chosen']}_fps"][0]
    assert set(row["stage_s"]) == set(bench_pipeline.STAGES)
    assert (tmp_path / "pose-rig-64-12-result" / "result.mp4").is_file()
    assert not (tmp_path / "pose-rig-64-12-result" / "sbs.mp4").exists()


def test_malloc_arena_limit_takes_on_linux():
    from internet.speedups.memory import limit_malloc_arenas

    assert limit_malloc_arenas(8) is sys.platform.startswith("linux")  # glibc here; 8 arenas: a loose cap


_HUGE_PAGES_PROBE = """
import sys
from internet.speedups.memory import enable_huge_pages
print(enable_huge_pages())
import torch
x = torch.empty(64 << 20, dtype=torch.uint8).fill_(1)  # 64 MB, touched
print(sum(int(line.split()[1]) for line in open("/proc/self/smaps") if line.startswith("AnonHugePages:")))
"""


def _probe(extra_env: dict) -> tuple[bool, int]:
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"} | extra_env
    out = subprocess.run([sys.executable, "-c", _HUGE_PAGES_PROBE], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()  # fmt: skip
    return out[0] == "True", int(out[1])


def test_huge_pages_are_asked_for_only_where_the_kernel_gives_them(tmp_path, monkeypatch):
    from internet.speedups.memory import THP_VARIABLE, enable_huge_pages, huge_pages_available

    monkeypatch.delenv(THP_VARIABLE, raising=False)
    never = tmp_path / "never"
    never.write_text("always madvise [never]\n")
    assert not huge_pages_available(never) and not enable_huge_pages(never)
    assert THP_VARIABLE not in os.environ
    assert not huge_pages_available(tmp_path / "missing")  # not Linux, or no THP support
    madvise = tmp_path / "madvise"
    madvise.write_text("always [madvise] never\n")
    assert enable_huge_pages(madvise) and os.environ[THP_VARIABLE] == "1"
    monkeypatch.setenv(THP_VARIABLE, "0")  # an explicit opt-out is kept
    assert not enable_huge_pages(madvise) and os.environ[THP_VARIABLE] == "0"


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
def test_enable_huge_pages_backs_large_tensors_with_huge_pages():
    """In a fresh interpreter, a 64 MB tensor made after ``enable_huge_pages()`` lies in huge pages (the kernel's
    own accounting, /proc/self/smaps); with the opt-out it does not."""
    from internet.speedups.memory import THP_SETTING, huge_pages_available

    if not huge_pages_available():
        pytest.skip("this kernel gives no transparent huge pages")
    enabled, huge_kb = _probe({})
    assert enabled and huge_kb >= 32 * 1024
    if "[madvise]" in THP_SETTING.read_text():  # in mode "always" the kernel gives them to everyone anyway
        enabled, huge_kb = _probe({"THP_MEM_ALLOC_ENABLE": "0"})
        assert not enabled and huge_kb < 32 * 1024


_REUSE_PROBE = """
import resource, sys
from internet.speedups.memory import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
import torch  # (numpy would ask for huge pages itself, which hides the count)
faults = []
for _ in range(16):  # glibc's aligned allocations settle into reusing the same block after a few rounds
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(40 << 20, dtype=torch.uint8)  # 40 MB: above glibc's largest dynamic mmap threshold
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[8:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("mode", ["default", "retain"])
def test_retained_memory_is_reused_without_page_faults(mode):
    """A 40 MB block freed and allocated again and again: by default glibc unmaps it and every next one faults
    in ~10,000 fresh pages; after ``retain_freed_memory()`` freed memory is reused (the kernel's own count)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "THP_MEM"))}
    out = subprocess.run([sys.executable, "-c", _REUSE_PROBE, mode], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout  # fmt: skip
    faults = int(out.split()[-1])
    if mode == "retain":
        assert faults < 1000
    else:
        assert faults > 5000  # 40 MB / 4 KB = 10,240 pages (the probe would be meaningless without this)


def test_retain_freed_memory_leaves_a_users_setting_alone(monkeypatch):
    from internet.speedups.memory import retain_freed_memory

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "12345")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "67890")
    assert retain_freed_memory() and os.environ["MALLOC_MMAP_THRESHOLD_"] == "12345"
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "67890"


def test_model_bench_reports_ratio_agreement_and_flops():
    """The fast-vs-reference row of a tiny preset: both timed, outputs compared, FLOPs counted (the packed
    convolutions are invisible to FlopCounterMode, so this guards the count against reading 0)."""
    from benchmarks.inference import bench_fast
    from benchmarks.reference import MAX_ABS_DIFF

    row = bench_fast("tiny", "cpu", frames=2, rounds=1, levers=True)
    assert row.ms_per_frame > 0 and row.reference_ms_per_frame > 0 and row.ratio > 0
    assert row.max_abs_diff <= MAX_ABS_DIFF
    assert row.gflops_per_frame > 0 and row.reference_gflops_per_frame >= row.gflops_per_frame
    assert isinstance(row.huge_pages, bool)
    names = [lever.name for lever in row.levers]
    assert names[0].startswith("fast (") and any("pre-packed" in name for name in names[1:])


def test_original_environment_bench_gives_each_path_its_own_allocator(monkeypatch):
    """The fast path's process sees the app's allocator variables, the reference's process none of them; the
    two processes build the same weights and frames (their outputs agree)."""
    from benchmarks.inference import bench_environments
    from benchmarks.reference import MAX_ABS_DIFF

    settings = {"THP_MEM_ALLOC_ENABLE": "1", "MALLOC_MMAP_THRESHOLD_": str(64 << 20),
                "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}  # fmt: skip
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    row = bench_environments("tiny", frames=2, rounds=1)
    assert row.fast_environment == settings
    assert row.reference_environment == dict.fromkeys(settings)
    assert row.ms_per_frame > 0 and row.reference_ms_per_frame > 0 and row.ratio > 0
    assert row.max_abs_diff <= MAX_ABS_DIFF
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"  # the parent's own environment is restored


def _answers(value, queue) -> None:
    queue.put(value * 2)


def _dies(value, queue) -> None:
    os._exit(value)


def test_a_child_that_dies_is_reported_not_waited_for():
    """The benchmark's fresh-process runs return the child's answer, and raise (rather than hang on the queue
    forever) when the child ends without one."""
    assert bench_module._in_child(_answers, 21) == 42
    with pytest.raises(RuntimeError, match="exit code 3"):
        bench_module._in_child(_dies, 3)


def test_accelerator_section_runs_on_any_device():
    """The GPU section (run only where CUDA is, never in CI) exercised on the CPU with the tiny preset: every
    precision and batch timed, the float32 fast path agreeing with the eager reference, the best row picked
    from the numbers. torch.compile is left out here (minutes on CPU); FastOptions(compile=True) has its own test."""
    from benchmarks.reference import MAX_ABS_DIFF

    row = bench_module.bench_accelerator("tiny", "cpu", batches=(1, 2), compiled=False, repeats=1)
    assert set(row.fps) == {"fp32/batch1", "fp32/batch2", "bf16/batch1", "bf16/batch2"}
    assert all(isinstance(fps, float) and fps > 0 for fps in row.fps.values()), row.fps
    assert row.reference_fps > 0 and row.image_size == 64 and row.device == "cpu"
    assert row.max_abs_diff["fp32"] <= MAX_ABS_DIFF
    assert 0 < row.max_abs_diff["bf16"] < 0.25  # bf16 rounds (~1e-2) but still renders the same frame
    assert row.best_fps == max(row.fps.values()) and row.fps[row.best] == row.best_fps
    assert row.realtime == (row.best_fps >= 30) and row.compile_s == {} and row.peak_memory_mb == {}


def test_gpu_only_refuses_without_cuda(monkeypatch, capsys):
    monkeypatch.setattr(bench_module.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        bench_module.main(["--gpu-only"])
    assert "needs a CUDA device" in capsys.readouterr().err
