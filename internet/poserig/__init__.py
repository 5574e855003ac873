"""The training-free pose-rig motion source (issue 7): MediaPipe landmarks -> retargeted skinned layers."""

from internet.poserig.filters import LandmarkSmoother, OneEuroFilter
from internet.poserig.landmarks import ExactProvider, LandmarkProvider, Landmarks, MediaPipeProvider
from internet.poserig.posemetrics import limb_angle_correlation
from internet.poserig.retarget import pose_distance, retarget
from internet.poserig.rig import ANCHOR_NAMES, PoseRig, RigOptions

__all__ = [
    "ANCHOR_NAMES", "ExactProvider", "LandmarkProvider", "LandmarkSmoother", "Landmarks", "MediaPipeProvider",
    "OneEuroFilter", "PoseRig", "RigOptions", "limb_angle_correlation", "pose_distance", "retarget",
]  # fmt: skip
