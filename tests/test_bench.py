"""The pipeline benchmark reports what docs/performance.md quotes (tiny sizes); the server memory setting."""

from __future__ import annotations

import os

import pytest

from internet import bench as bench_module
from internet import bench_pipeline


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
    import sys

    from internet.memory import limit_malloc_arenas

    assert limit_malloc_arenas(8) is sys.platform.startswith("linux")  # glibc here; 8 arenas: a loose cap


def test_model_bench_reports_ratio_agreement_and_flops():
    """The fast-vs-reference row of a tiny preset: both timed, outputs compared, FLOPs counted (the packed
    convolutions are invisible to FlopCounterMode, so this guards the count against reading 0)."""
    from internet.bench import bench_fast
    from internet.fast import MAX_ABS_DIFF

    row = bench_fast("tiny", "cpu", frames=2, rounds=1, levers=True)
    assert row.ms_per_frame > 0 and row.reference_ms_per_frame > 0 and row.ratio > 0
    assert row.max_abs_diff <= MAX_ABS_DIFF
    assert row.gflops_per_frame > 0 and row.reference_gflops_per_frame >= row.gflops_per_frame
    names = [lever.name for lever in row.levers]
    assert names[0].startswith("fast (") and any("pre-packed" in name for name in names[1:])


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
