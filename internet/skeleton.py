"""The body joints shared by SynthRunway ground truth, the pose rig and MediaPipe.

SynthRunway writes ``joints.npy`` as (F, J, 2) pixel coordinates in ``JOINT_NAMES`` order; the pose rig
reads landmarks in the same order, so a landmark provider can be MediaPipe (through ``MEDIAPIPE_INDEX``) or
the renderer's exact joints. "left" is the person's left, as in MediaPipe.
"""

from __future__ import annotations

JOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

# Index of each joint in MediaPipe Pose's 33 landmarks.
MEDIAPIPE_INDEX: tuple[int, ...] = (0, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

JOINT = {name: i for i, name in enumerate(JOINT_NAMES)}
