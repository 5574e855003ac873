"""The shared pose type (:class:`Landmarks`) and its providers: where the pipeline and the pose rig get the
13 joints and the person mask from.

A provider turns one RGB frame into :class:`Landmarks` (or ``None`` when nobody is found). The rig does not
care which provider made them, so tests and benchmarks can replay exact joints (:class:`ExactProvider`)
and the app uses MediaPipe Pose (:class:`MediaPipeProvider`).
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from internet.errors import InputError
from internet.skeleton import JOINT_NAMES, MEDIAPIPE_INDEX


@dataclass
class Landmarks:
    """One person's pose in one frame, in that frame's pixels."""

    points: np.ndarray  # (13, 2) float32 pixels (x, y) in JOINT_NAMES order
    visibility: np.ndarray  # (13,) float32 in [0, 1]
    mask: np.ndarray | None = None  # (H, W) float32 person mask in [0, 1], or None

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, np.float32).reshape(len(JOINT_NAMES), 2)
        self.visibility = np.asarray(self.visibility, np.float32).reshape(len(JOINT_NAMES))
        if self.mask is not None:
            self.mask = np.asarray(self.mask, np.float32)


class LandmarkProvider(Protocol):
    """Anything that finds the 13 joints (and ideally a person mask) in an RGB frame."""

    def find(self, frame_rgb: np.ndarray) -> Landmarks | None: ...


class _Deferred(types.ModuleType):
    """Stands in for a module while a dependency imports it but does not use it yet: the first attribute read
    imports the real module (by then no longer shadowed in ``sys.modules``) and forwards to it."""

    def __getattr__(self, name: str):
        if name.startswith("__"):  # import machinery probing (__path__, __spec__, ...): not a use
            raise AttributeError(name)
        with _import_lock:  # another thread may be importing MediaPipe, the stand-in still in sys.modules
            if sys.modules.get(self.__name__) is self:  # only MediaPipe's own import could get here
                raise AttributeError(f"{self.__name__}.{name} used while MediaPipe is being imported")
            module = importlib.import_module(self.__name__)
        return getattr(module, name)


_import_lock = threading.RLock()


def import_mediapipe():
    """``import mediapipe``, without matplotlib. MediaPipe's package imports ``mp.solutions.drawing_utils``,
    which imports ``matplotlib.pyplot`` (0.67 s of MediaPipe's 0.97 s import here) for a 3-D plotting helper
    we never call. While MediaPipe is imported, pyplot (and matplotlib, if not loaded yet) are stand-ins that
    import the real module on first use; afterwards ``sys.modules`` is as it was, so any later
    ``import matplotlib.pyplot`` is the real one."""
    with _import_lock:
        if "mediapipe" in sys.modules:
            return sys.modules["mediapipe"]
        stand_ins = {name: _Deferred(name) for name in ("matplotlib", "matplotlib.pyplot") if name not in sys.modules}
        if len(stand_ins) == 2:  # `import matplotlib.pyplot as plt` reads the attribute off the package
            stand_ins["matplotlib"].__dict__["pyplot"] = stand_ins["matplotlib.pyplot"]
        sys.modules.update(stand_ins)
        try:
            import mediapipe
        finally:
            for name, module in stand_ins.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
        return mediapipe


def preload_mediapipe() -> bool:
    """Import MediaPipe ahead of its first use (a server starting up); ``False`` when it is not installed
    (the pose rig reports that when it is used)."""
    try:
        import_mediapipe()
    except ImportError:
        return False
    return True


class MediaPipeProvider:
    """MediaPipe Pose 0.10.21 (``mp.solutions``, ``model_complexity=1``, with segmentation).

    Use ``static_image_mode=True`` for the source photo and ``False`` (tracking) for a video's frames;
    create one per stream and reuse it, then :meth:`close` it (or use it as a context manager). Only the
    complexity-1 model ships with the wheel, so nothing is downloaded.
    """

    def __init__(self, static_image_mode: bool, min_detection_confidence: float = 0.5) -> None:
        mp = import_mediapipe()  # imported here: heavy, and only this provider needs it
        self._pose = mp.solutions.pose.Pose(
            static_image_mode=static_image_mode,
            model_complexity=1,
            enable_segmentation=True,
            min_detection_confidence=min_detection_confidence,
        )
        self._index = np.asarray(MEDIAPIPE_INDEX)

    def find(self, frame_rgb: np.ndarray) -> Landmarks | None:
        """The person in one RGB uint8 frame (``None``: nobody)."""
        if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
            raise InputError("Pose detection needs an RGB uint8 image")
        result = self._pose.process(np.ascontiguousarray(frame_rgb))
        if result.pose_landmarks is None:
            return None
        h, w = frame_rgb.shape[:2]
        marks = result.pose_landmarks.landmark
        xyv = np.array([(marks[i].x * w, marks[i].y * h, marks[i].visibility) for i in self._index], np.float32)
        mask = None if result.segmentation_mask is None else np.array(result.segmentation_mask, np.float32)
        return Landmarks(points=xyv[:, :2], visibility=xyv[:, 2], mask=mask)

    detect = find  # the earlier name, kept for callers

    def close(self) -> None:
        self._pose.close()

    def __enter__(self) -> MediaPipeProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ExactProvider:
    """Replays given joints (and masks) one frame per :meth:`find` call, ignoring the frame's pixels.

    ``joints`` is (F, 13, 2) pixels in JOINT_NAMES order (SynthRunway's ``joints.npy``); ``masks`` is
    (F, H, W) or None. A frame whose joints are all NaN counts as "person lost" and gives ``None``.
    """

    def __init__(self, joints: np.ndarray, masks: np.ndarray | None = None) -> None:
        self.joints = np.asarray(joints, np.float32)
        if self.joints.ndim != 3 or self.joints.shape[1:] != (len(JOINT_NAMES), 2):
            raise InputError(f"Exact joints must be (frames, {len(JOINT_NAMES)}, 2), got {self.joints.shape}")
        if masks is not None and len(masks) != len(self.joints):
            raise InputError("Exact masks and joints have different frame counts")
        self.masks = masks
        self.index = 0

    def find(self, frame_rgb: np.ndarray | None = None) -> Landmarks | None:
        """The next frame's joints (``None``: that frame's person is lost)."""
        if self.index >= len(self.joints):
            raise InputError("The exact landmark provider has no more frames")
        i, self.index = self.index, self.index + 1
        if np.isnan(self.joints[i]).all():
            return None
        mask = None if self.masks is None else self.masks[i]
        return Landmarks(points=self.joints[i], visibility=np.ones(len(JOINT_NAMES), np.float32), mask=mask)

    detect = find  # the earlier name, kept for callers

    def reset(self) -> None:
        self.index = 0
