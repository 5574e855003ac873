"""The training-free pose rig: landmarks -> retargeted, forward-skinned layers of the photo's person."""

from internet.sources.landmarks import ExactProvider, LandmarkProvider, Landmarks, MediaPipeProvider
from internet.sources.poserig.filters import LandmarkSmoother, OneEuroFilter
from internet.sources.poserig.posemetrics import limb_angle_correlation
from internet.sources.poserig.retarget import pose_distance, retarget
from internet.sources.poserig.rig import ANCHOR_NAMES, PoseRig, RigOptions

__all__ = [
    "ANCHOR_NAMES", "ExactProvider", "LandmarkProvider", "LandmarkSmoother", "Landmarks", "MediaPipeProvider",
    "OneEuroFilter", "PoseRig", "RigOptions", "limb_angle_correlation", "pose_distance", "retarget",
]  # fmt: skip
