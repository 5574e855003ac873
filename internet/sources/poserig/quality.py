"""The pose rig's quality figure on real footage: limb-angle correlation with the driver.

Used by ``tools/poserig_eval.py`` and the real-media test. Poses are found by MediaPipe: the driver's
on the original frames, the outputs' on the rendered frames (a fresh tracker per sequence).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from internet.errors import InputError
from internet.skeleton import JOINT
from internet.sources.landmarks import Landmarks, MediaPipeProvider
from internet.sources.poserig.posemetrics import limb_angle_correlation
from internet.sources.poserig.rig import PoseRig, RigOptions


@dataclass
class RigEvaluation:
    """Limb-angle correlations with the driver, and the rig's frames."""

    driver: float  # the driving frames themselves, cropped and resized like the outputs
    frozen: float  # the photo repeated
    rig: float  # the pose rig's output
    outputs: list[np.ndarray]  # the rig's frames (RGB uint8)
    driving: list[np.ndarray]  # the cropped, resized driving frames
    render_ms: float  # mean PoseRig.render time per frame


def square_crop(image: np.ndarray, centre_x: float | None = None) -> np.ndarray:
    """The square of side max(H, W) centred on column ``centre_x`` (default the middle), edge-padded."""
    h, w = image.shape[:2]
    side = max(h, w)
    cx = w / 2 if centre_x is None else centre_x
    left, top = int(round(cx - side / 2)), (h - side) // 2
    pad = [max(0, -top), max(0, top + side - h), max(0, -left), max(0, left + side - w)]
    padded = cv2.copyMakeBorder(image, *pad, cv2.BORDER_REPLICATE)
    return padded[top + pad[0] : top + pad[0] + side, left + pad[2] : left + pad[2] + side]


def track_landmarks(frames: list[np.ndarray]) -> list[Landmarks | None]:
    """MediaPipe (tracking mode, a fresh tracker) on every frame."""
    with MediaPipeProvider(static_image_mode=False) as provider:
        return [provider.find(f) for f in frames]


def evaluate_rig(
    photo: np.ndarray, clip: list[np.ndarray], size: int, fps: float, options: RigOptions | None = None
) -> RigEvaluation:
    """Animate ``photo`` with ``clip`` (RGB frames) at ``size`` px and score driver, frozen photo and rig."""
    with MediaPipeProvider(static_image_mode=True) as provider:
        first = provider.find(clip[0])
        centre_x = None if first is None else float(first.points[[JOINT["left_hip"], JOINT["right_hip"]], 0].mean())
        driving = [cv2.resize(square_crop(f, centre_x), (size, size), interpolation=cv2.INTER_AREA) for f in clip]
        source = cv2.resize(square_crop(photo), (size, size), interpolation=cv2.INTER_AREA)
        source_marks = provider.find(source)
    if source_marks is None:
        raise InputError("No person found in the photo")
    driver_marks = track_landmarks(clip)  # the reference: the driver in the original frames
    rig = PoseRig(source, source_marks, options or RigOptions(fps=fps))
    outputs, spent = [], 0.0
    for marks in track_landmarks(driving):  # what the rig sees, as the pipeline would
        t0 = time.perf_counter()
        outputs.append(rig.render(marks, "keep")[0])
        spent += time.perf_counter() - t0
    return RigEvaluation(
        driver=limb_angle_correlation(driver_marks, track_landmarks(driving)),
        frozen=limb_angle_correlation(driver_marks, track_landmarks([source] * len(driving))),
        rig=limb_angle_correlation(driver_marks, track_landmarks(outputs)),
        outputs=outputs, driving=driving, render_ms=1000 * spent / len(outputs),
    )  # fmt: skip


def first_seconds(path: str, seconds: float) -> tuple[list[np.ndarray], float]:
    """The first ``seconds`` of a video as RGB frames, and its frame rate."""
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames: list[np.ndarray] = []
    while len(frames) < int(round(seconds * fps)):
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise InputError(f"Could not read frames from {path}")
    return frames, fps
