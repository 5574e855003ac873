"""Per-frame anchors as JSON, written frame by frame (memory stays flat) under a temporary name."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from internet.sources.frames import FrameResult
from internet.video.atomic import AtomicWriter


class AnchorsJsonWriter(AtomicWriter):
    """``{"meta": {...}, "frames": [{"index", "anchors_source", "anchors_driving", "jacobians_source",
    "jacobians_driving", "warp_error"}, ...]}``; coordinates in [-1, 1], x then y, align_corners=True."""

    def __init__(self, path: str | os.PathLike, meta: dict) -> None:
        super().__init__(path)
        self._file = self._tmp.open("w", encoding="utf-8")
        self._file.write('{"meta": ' + json.dumps(meta) + ', "frames": [\n')
        self._count = 0

    def write(self, frame: FrameResult, warp_error: float = math.nan) -> None:
        m = frame.motion
        record = {
            "index": frame.index,
            "anchors_source": _rounded(m.anchors_source),
            "anchors_driving": _rounded(m.anchors_driving),
            "jacobians_source": _rounded(m.jacobians_source),
            "jacobians_driving": _rounded(m.jacobians_driving),
            "warp_error": None if math.isnan(warp_error) else round(warp_error, 6),
        }
        self._file.write((",\n" if self._count else "") + json.dumps(record))
        self._count += 1

    def close(self) -> Path:
        if not self._file.closed:
            self._file.write("\n]}\n")
            self._file.close()
            self._publish()
        return self.path

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._discard()


def _rounded(array) -> list:
    return [_rounded(a) for a in array] if getattr(array, "ndim", 0) > 1 else [round(float(v), 5) for v in array]
