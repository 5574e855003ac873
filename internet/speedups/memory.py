"""Process-wide memory settings: fewer glibc malloc arenas (servers), freed large blocks kept for reuse, and
transparent huge pages for torch's tensors. Entry points (app, CLI, benchmarks) call what they need at start-up."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # mallopt parameters (glibc malloc.h)
THP_VARIABLE = "THP_MEM_ALLOC_ENABLE"  # read by PyTorch's CPU allocator (c10), once, at its first allocation
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def limit_malloc_arenas(count: int = 2) -> bool:
    """Let glibc keep at most ``count`` malloc arenas; returns whether the setting took (glibc only).

    By default every thread that allocates gets an arena of its own (up to 8 per core). A render's decoder,
    encoder and MediaPipe threads then leave freed frame buffers scattered over many arenas that are never
    returned, and a server's RSS creeps up over its first renders: over 16 short 512² pose-rig renders in
    one process, 603 -> 900-950 MB by default, 505 -> 540-590 MB (flat from the third render on) after this
    call with 2 arenas (docs/performance.md). Call it at start-up, before the threads exist."""
    return _mallopt(_M_ARENA_MAX, count)


def retain_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 128 << 20) -> bool:
    """Keep freed blocks of up to ``mmap_threshold`` bytes in the process for reuse, and up to
    ``trim_threshold`` bytes free at the top of the heap, instead of handing them back to the kernel;
    returns whether glibc took the setting (this process, and the same defaults in ``MALLOC_*_`` variables
    for child processes). Values already set in the environment win.

    glibc serves blocks above a threshold (dynamic, at most 32 MB) with fresh ``mmap``s and unmaps them when
    freed. At 512² a 32-35-channel activation is 33-37 MB: every frame, those come back as new pages the
    kernel must fault in and zero (concatenating two 16-channel 512² tensors: 9.6-10 ms into a fresh block,
    4.2-4.5 ms into a reused one). 64 MB covers every activation of the 512² presets; measured in one process,
    alternating: internet-512 fast path 0.92x, the eager reference 0.91x (docs/performance.md). Cost: up to
    ``trim_threshold`` of freed memory stays in RSS, so only processes that run the model call it."""
    taken = True
    for name, param, value in (
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, mmap_threshold),
        ("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, trim_threshold),
    ):
        if name in os.environ:  # glibc read it at start-up: leave the user's choice alone
            continue
        if _mallopt(param, value):
            os.environ[name] = str(value)
        else:
            taken = False
    return taken


def _mallopt(param: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(param, int(value)))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def huge_pages_available(setting: Path = THP_SETTING) -> bool:
    """Whether the kernel gives transparent huge pages to memory that asks for them (mode ``always`` or
    ``madvise``; not ``never``, and not outside Linux)."""
    try:
        text = setting.read_text()
    except OSError:
        return False
    return "[always]" in text or "[madvise]" in text


def enable_huge_pages(setting: Path = THP_SETTING) -> bool:
    """Ask PyTorch's CPU allocator to back tensors of 2 MB and more with transparent huge pages
    (``THP_MEM_ALLOC_ENABLE=1``: 2 MB-aligned, ``madvise(MADV_HUGEPAGE)``); returns whether it is on.

    A 512² frame allocates ~160 MB of fresh activations (16-35 channels at 512²). glibc hands most of them
    back to the kernel when freed, so the next frame faults them in again, 4 KB at a time: ~43,000 page
    faults and ~170 ms of kernel time per internet-512 frame on 2 vCPUs. With huge pages, ~2,500 faults,
    and fewer TLB misses in the memory-bound layers (docs/performance.md). The variable is read once, at
    torch's first allocation: call this at start-up, before any tensor exists (entry points do). An explicit
    ``THP_MEM_ALLOC_ENABLE`` in the environment (``0`` to opt out) is left as it is."""
    if not huge_pages_available(setting):
        return False
    os.environ.setdefault(THP_VARIABLE, "1")
    return huge_pages_enabled(setting)


def huge_pages_enabled(setting: Path = THP_SETTING) -> bool:
    """Whether torch's allocator in a process started with this environment uses huge pages."""
    return huge_pages_available(setting) and os.environ.get(THP_VARIABLE, "").strip() == "1"
