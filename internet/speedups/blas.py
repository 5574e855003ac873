"""numpy's BLAS threads during a render: one.

numpy's OpenBLAS starts a worker per core and lets it spin for a while after every call. The pose rig makes
thousands of tiny matrix products per second (skinning, distance fields), so on 2 vCPUs that worker burnt
~30-40 CPU ms per frame that MediaPipe, the rasteriser and ffmpeg needed: python CPU per 512² pose-rig frame
125 -> 85 ms, end to end 10.5 -> 11.7-12.4 frames/s warm (docs/performance.md). None of these products is
large enough to gain from a second thread. PyTorch's own thread pool is not affected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_controller = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit the BLAS libraries loaded in this process (numpy's OpenBLAS) to one thread inside the block.

    The limit is process-wide while it lasts (BLAS libraries have no per-thread setting): a concurrent render
    in the same process shares it, which only ever makes its BLAS calls single-threaded too."""
    global _controller
    from threadpoolctl import ThreadpoolController

    if _controller is None:  # finding the loaded libraries takes a few ms: once per process
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield
