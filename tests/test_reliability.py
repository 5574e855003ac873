"""Many users and killed renders: the load test of tools/load_test.py at CI scale, and a CLI render
killed with SIGKILL half-way. Figures are printed (``pytest -s``) and written to test-artifacts/."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from tools import load_test

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
pytest.importorskip("gradio_client")


@pytest.mark.timeout(900)
def test_eight_clients_preview_and_render_without_failures_or_mixing():
    report = load_test.run(clients=8, duration=5.0)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load_test.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(json.dumps(asdict(report), indent=2))
    assert report.failed == {}, report.failures
    assert report.completed.get("/preview", 0) >= 8 and report.completed.get("/render", 0) >= 8
    assert report.mixed_outputs == 0 and report.checked_outputs == sum(report.completed.values())
    assert report.rss_peak_mb < 4096, f"server peak RSS {report.rss_peak_mb:.0f} MB"
    burst = report.queue_full
    assert burst["server_alive"] and burst["serves_after_burst"]
    assert burst["other_errors"] == [], burst
    assert burst["refused_busy"] >= 1, f"8 renders against a queue of 2 were all accepted: {burst}"
    assert burst["completed"] + burst["refused_busy"] == burst["submitted"]
    assert all("Traceback" not in m for m in burst["busy_messages"])


@pytest.mark.timeout(300)
def test_a_render_killed_half_way_leaves_no_file_under_the_final_name(tmp_path):
    out = tmp_path / "result.mp4"
    command = [
        sys.executable, "-m", "internet.animate", str(load_test.EXAMPLES / "source_10000_09.png"),
        str(load_test.CLIP), "-o", str(out), "--size", "512",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    partial: list[Path] = []
    while time.monotonic() < deadline and process.poll() is None:
        partial = [p for p in tmp_path.glob(".result.partial-*.mp4") if p.stat().st_size > 0]
        if partial:
            break
        time.sleep(0.05)
    assert partial, "the render finished (or failed) before any frame was written; nothing was killed"
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not out.exists(), "a killed render left a file under the final name"
