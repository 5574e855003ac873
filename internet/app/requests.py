"""One app request's surroundings: its work folder, its cancel flag, its inputs checked, and its failures turned
into one line for the page."""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from internet.errors import InputError
from internet.pipeline import Cancelled
from internet.video.io import VideoInfo, ffmpeg_exe, probe_video

log = logging.getLogger("internet.app")


class WorkFolders:
    """One fresh folder per request under ``root``; old, inactive ones are deleted on the next request."""

    def __init__(self, root: Path, max_age: float) -> None:
        self.root = root
        self.max_age = max_age
        self._active: set[Path] = set()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def new(self, session: str) -> Iterator[Path]:
        """A new folder for one request; it stays on disk (gradio copies the outputs after we return)."""
        self.sweep()
        folder = self.root / f"{_safe(session)[:16]}-{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True)
        with self._lock:
            self._active.add(folder)
        try:
            yield folder
        finally:
            with self._lock:
                self._active.discard(folder)

    def sweep(self) -> None:
        if not self.root.is_dir():
            return
        cutoff = time.time() - self.max_age
        with self._lock:
            active = set(self._active)
        for folder in self.root.iterdir():
            with contextlib.suppress(OSError):
                if folder.is_dir() and folder not in active and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)


class CancelEvents:
    """The cancel flag of each session's running job."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def running(self, session: str) -> Iterator[threading.Event]:
        event = threading.Event()
        with self._lock:
            self._events[session] = event
        try:
            yield event
        finally:
            with self._lock:
                if self._events.get(session) is event:
                    del self._events[session]

    def __len__(self) -> int:
        """How many jobs are running."""
        with self._lock:
            return len(self._events)

    def cancel(self, session: str) -> bool:
        with self._lock:
            event = self._events.get(session)
        if event is not None:
            event.set()
        return event is not None


def request_inputs(source: str | None, driving: str | None, keep_audio: bool, folder: Path) -> tuple[str, VideoInfo]:
    """Check that both inputs are there and the video is one; without ``keep_audio``, a silent copy of it."""
    if not source:
        raise InputError("Add a photo of a person first (upload one or pick an example)")
    if not driving:
        raise InputError("Add a driving video first (upload one or pick an example)")
    info = probe_video(driving)  # a clear error for anything that is not a video
    if keep_audio or not info.has_audio:
        return source, info
    silent = folder / "driving_silent.mkv"  # Matroska holds any codec the upload used
    command = [
        ffmpeg_exe(),
        "-nostdin",
        "-y",
        "-loglevel",
        "error",
        "-i",
        str(driving),
        "-map",
        "0:v:0",
        "-c",
        "copy",
        "-an",
        str(silent),
    ]
    if subprocess.run(command, capture_output=True).returncode != 0:
        raise InputError(f"Could not remove the audio from {Path(driving).name}")
    return source, probe_video(silent)


@contextlib.contextmanager
def for_people(action: str) -> Iterator[None]:
    """Turn every failure into one line for the page; never a traceback."""
    try:
        yield
    except gr.Error:
        raise
    except InputError as error:
        raise gr.Error(str(error), print_exception=False) from None
    except Cancelled:
        raise gr.Error(
            f"The {action} was cancelled; nothing was written", title="Cancelled", print_exception=False
        ) from None
    except Exception as error:
        log.exception("%s failed", action)
        raise gr.Error(
            f"The {action} failed unexpectedly ({type(error).__name__}); the details are in the server log",
            print_exception=False,
        ) from None


def session_of(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


def _safe(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in "-_") or "session"
