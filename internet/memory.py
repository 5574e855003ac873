"""Process-wide memory setting for long-running servers (the app): fewer glibc malloc arenas."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)


def limit_malloc_arenas(count: int = 2) -> bool:
    """Let glibc keep at most ``count`` malloc arenas; returns whether the setting took (glibc only).

    By default every thread that allocates gets an arena of its own (up to 8 per core). A render's decoder,
    encoder and MediaPipe threads then leave freed frame buffers scattered over many arenas that are never
    returned, and a server's RSS creeps up over its first renders: over 16 short 512² pose-rig renders in
    one process, 603 -> 900-950 MB by default, 505 -> 540-590 MB (flat from the third render on) after this
    call with 2 arenas (docs/performance.md). Call it at start-up, before the threads exist."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, int(count)))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
