"""Load test of the app on loopback: many gradio_client users doing preview + render at once.

    python tools/load_test.py [--clients 8] [--duration 120] [--json FILE]

Starts ``app.py`` as its own process (so its memory is measured alone), then:

1. **reference**: one preview and one render per client photo, one at a time;
2. **load**: ``--clients`` threads, each with its own ``gradio_client.Client`` and its own photo (an example
   photo, or the mirror image of one), loop preview -> render until ``--duration`` seconds have passed
   (a started request always finishes). Every returned video is decoded; its first frame must be closest
   to the reference of the *same* photo among all photos (outputs never mix between users);
3. **queue full**: a second server with ``INTERNET_MAX_QUEUE=2`` gets ``--clients`` renders at once; the
   ones beyond the queue must be refused with a clear "busy" message, the others must complete.

Prints and (``--json``) writes: requests completed / failed, p50/p95 latency per endpoint, mixed outputs,
the server's RSS at the start and the end, its peak and a timeline (every 2 s), and what the queue-full phase returned.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "assets" / "examples"
CLIP = EXAMPLES / "runway_10000_02.mp4"
ENDPOINTS = ("/preview", "/render")
BUSY = re.compile(r"(?i)queue is full|busy|try again")


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path

    def rss_mb(self, field_name: str = "VmRSS") -> float:
        """Resident memory of the server process (``VmHWM``: its peak so far), in MB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class LoadReport:
    clients: int
    duration_s: float
    completed: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    latency_p50_s: dict[str, float] = field(default_factory=dict)
    latency_p95_s: dict[str, float] = field(default_factory=dict)
    latency_max_s: dict[str, float] = field(default_factory=dict)
    mixed_outputs: int = 0
    checked_outputs: int = 0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_timeline_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds into the load, RSS)
    queue_full: dict = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(work: Path, **limits: str) -> Server:
    """``python app.py`` on a free loopback port, pose rig only, with the given ``INTERNET_*`` limits."""
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "INTERNET_CHECKPOINT": "none",
        "INTERNET_MAX_SECONDS": "2",
        **{f"INTERNET_{k.upper()}": v for k, v in limits.items()},
    }
    log = work / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with code {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return Server(process, url, log)
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("the app did not start listening within 120 s")


def user_photos(count: int, folder: Path) -> list[Path]:
    """``count`` distinct photos, one per user: the example photos, then their mirror images."""
    examples = sorted(EXAMPLES.glob("source_*.png")) + sorted(EXAMPLES.glob("runway_*.png"))
    paths = []
    for i in range(count):
        bgr = cv2.imread(str(examples[i % len(examples)]))
        if (i // len(examples)) % 2:
            bgr = cv2.flip(bgr, 1)
        path = folder / f"user-{i}.png"
        cv2.imwrite(str(path), bgr)
        paths.append(path)
    return paths


def first_frame(video: str | Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise RuntimeError(f"cannot decode {video}")
    return cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)


def settings(fps: float, seconds: float) -> list:
    # motion, size, mode, best_frame, max_seconds, fps, keep_audio, background
    return ["pose-rig", 256, "relative", False, seconds, fps, True, "keep"]


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)


def call(user, endpoint: str, photo: Path, fps: float, seconds: float) -> str:
    """One request by ``user`` (a ``gradio_client.Client``); returns the path of the video it got back."""
    from gradio_client import handle_file

    outputs = user.predict(handle_file(str(photo)), handle_file(str(CLIP)), *settings(fps, seconds), api_name=endpoint)
    return outputs[0]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load_phase(server: Server, photos: list[Path], duration: float, fps: float, seconds: float) -> LoadReport:
    report = LoadReport(clients=len(photos), duration_s=duration)
    reference_user = client(server.url)
    references = {
        (endpoint, i): first_frame(call(reference_user, endpoint, photo, fps, seconds))
        for i, photo in enumerate(photos)
        for endpoint in ENDPOINTS
    }
    report.rss_start_mb = server.rss_mb()
    latencies: dict[str, list[float]] = {e: [] for e in ENDPOINTS}
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def user(index: int) -> None:
        me = client(server.url)
        while time.monotonic() < stop_at:
            for endpoint in ENDPOINTS:
                started = time.monotonic()
                try:
                    video = call(me, endpoint, photos[index], fps, seconds)
                    frame = first_frame(video)
                except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                    with lock:
                        report.failed[endpoint] = report.failed.get(endpoint, 0) + 1
                        report.failures.append(f"user {index} {endpoint}: {str(error).splitlines()[0][:200]}")
                    continue
                elapsed = time.monotonic() - started
                errors = {j: float(np.mean((frame - references[(endpoint, j)]) ** 2)) for j in range(len(photos))}
                with lock:
                    latencies[endpoint].append(elapsed)
                    report.completed[endpoint] = report.completed.get(endpoint, 0) + 1
                    report.checked_outputs += 1
                    report.mixed_outputs += int(min(errors, key=errors.get) != index)

    def sample_memory(done: threading.Event, started: float) -> None:
        while not done.wait(2.0):
            report.rss_timeline_mb.append((round(time.monotonic() - started, 1), round(server.rss_mb(), 1)))

    done = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(done, time.monotonic()), daemon=True)
    sampler.start()
    with ThreadPoolExecutor(len(photos)) as pool:
        list(pool.map(user, range(len(photos))))
    done.set()
    sampler.join()
    for endpoint, values in latencies.items():
        report.latency_p50_s[endpoint] = round(percentile(values, 0.5), 2)
        report.latency_p95_s[endpoint] = round(percentile(values, 0.95), 2)
        report.latency_max_s[endpoint] = round(max(values, default=float("nan")), 2)
    report.rss_end_mb = server.rss_mb()
    report.rss_peak_mb = server.rss_mb("VmHWM")
    return report


def queue_full_phase(work: Path, photos: list[Path], fps: float, seconds: float) -> dict:
    """``len(photos)`` renders at once against a queue of 2: some are told the app is busy, none crash."""
    from gradio_client import handle_file

    server = start_server(work, max_queue="2", render_concurrency="1")
    try:
        jobs = [
            client(server.url).submit(
                handle_file(str(p)), handle_file(str(CLIP)), *settings(fps, seconds), api_name="/render"
            )
            for p in photos
        ]
        completed, busy, other = 0, [], []
        for job in jobs:
            try:
                job.result(timeout=300)
                completed += 1
            except Exception as error:  # noqa: BLE001 - sorted into "busy" and anything else
                message = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                (busy if BUSY.search(message) else other).append(message)
        alive = server.process.poll() is None
        after = client(server.url).predict(  # the server still serves once the burst is over
            handle_file(str(photos[0])), handle_file(str(CLIP)), *settings(fps, seconds), api_name="/preview"
        )
        return {
            "submitted": len(jobs),
            "max_queue": 2,
            "completed": completed,
            "refused_busy": len(busy),
            "busy_messages": sorted(set(busy)),
            "other_errors": other,
            "server_alive": alive,
            "serves_after_burst": Path(after[0]).is_file(),
        }
    finally:
        server.stop()


def run(clients: int, duration: float, fps: float = 10.0, seconds: float = 1.0) -> LoadReport:
    with tempfile.TemporaryDirectory(prefix="internet-load-") as folder:
        work = Path(folder)
        photos = user_photos(clients, work)
        server = start_server(work, max_queue=str(4 * clients), render_concurrency="1", preview_concurrency="2")
        try:
            report = load_phase(server, photos, duration, fps, seconds)
        finally:
            server.stop()
        report.queue_full = queue_full_phase(work, photos, fps, seconds)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load (started requests finish)")
    parser.add_argument("--fps", type=float, default=10.0, help="output frame rate of each request")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds of video per request")
    parser.add_argument("--json", type=Path, help="write the report as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    report = run(args.clients, args.duration, args.fps, args.seconds)
    text = json.dumps(asdict(report), indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if not report.failed and not report.mixed_outputs else 1


if __name__ == "__main__":
    sys.exit(main())
