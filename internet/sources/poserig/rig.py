"""The pose rig: a training-free motion source that animates a photo with a driver's skeleton.

Per video: the source photo is split into skinned layers once (:mod:`internet.sources.poserig.parts`). Per frame:
the driving landmarks are smoothed (One-Euro), the source skeleton is retargeted to the driver's bone
directions (:mod:`internet.sources.poserig.retarget`), each layer's mesh is forward-skinned and rasterised into a
low-res backward map (:mod:`internet.sources.poserig.mesh`), and each layer is drawn with one ``cv2.remap`` and
composited back to front over the background.

The returned :class:`FrameMotion` uses K = 10 anchors, one per rigid body segment:
``head, torso, left upper arm, left forearm, right upper arm, right forearm, left thigh, left shin, right
thigh, right shin``. Anchors sit at the segment centres (the nose for the head, the mean of shoulders and
hips for the torso). Jacobians are the segment's frame (unit direction and its normal, times the segment
length, in normalised units) in the source and that frame mapped by the segment's affine in the output,
so ``J_s @ inv(J_d)`` is the local backward transform of the paper's Eq 5. Weights, flow and confidence
are on the (S//4, S//4) grid; weight 0 is the background, 1..K the anchors' skinning weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from internet.errors import InputError
from internet.skeleton import JOINT
from internet.sources.frames import FrameMotion
from internet.sources.landmarks import Landmarks
from internet.sources.poserig import confidence as conf
from internet.sources.poserig.filters import FacingGuard, LandmarkSmoother
from internet.sources.poserig.mesh import (
    bone_angles,
    extend_map,
    inner_side,
    output_to_grid,
    rasterise,
    skin_vertices,
    torn_triangles,
    upsample_map,
)
from internet.sources.poserig.parts import build_layers
from internet.sources.poserig.retarget import (
    BONE,
    LIMB_SEGMENTS,
    NECK,
    PELVIS,
    SKIN_BONES,
    Mode,
    bone_affines,
    extend,
    retarget,
    torso_length,
)  # fmt: skip

Background = Literal["keep", "white", "green"]
ANCHOR_NAMES: tuple[str, ...] = (
    "head", "torso", "left_upper_arm", "left_forearm", "right_upper_arm", "right_forearm",
    "left_thigh", "left_shin", "right_thigh", "right_shin",
)  # fmt: skip
BACKGROUND_COLOURS = {"white": (255, 255, 255), "green": (0, 255, 0)}

# (K, B) matrix turning skinning-bone weights into anchor weights (chest + pelvis -> torso).
_BONE_TO_ANCHOR = np.zeros((len(ANCHOR_NAMES), len(SKIN_BONES)), np.float32)
for _k, _name in enumerate(ANCHOR_NAMES):
    for _bone in ("chest", "pelvis") if _name == "torso" else (_name,):
        _BONE_TO_ANCHOR[_k, BONE[_bone]] = 1.0


@dataclass
class RigOptions:
    """How the rig follows the driver."""

    # Bone directions copied ("absolute"), rotated by the driver's change from the reference ("relative"), or
    # relative with the large offsets from the reference dropped ("auto"; internet.sources.poserig.retarget.AUTO_KEEP).
    mode: Mode = "absolute"
    grid: int = 128  # mesh lattice size (capped at S); the FrameMotion maps are (S // 4, S // 4)
    smooth: bool = True  # One-Euro smoothing of the driving landmarks
    fps: float = 25.0  # driving frame rate, for the smoother
    min_cutoff: float = 1.0  # One-Euro: Hz at rest (lower = smoother)
    beta: float = 3.0  # One-Euro: cutoff increase per torso-length/s of speed (higher = less lag)
    min_ratio: float = 0.35  # shortest foreshortened bone, as a fraction of its source length


def _frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    v = b - a
    return np.array([[v[0], -v[1]], [v[1], v[0]]])


def _anchors(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) anchor positions and (K, 2, 2) segment frames (columns: along, across; pixels)."""
    e = extend(points)
    pos, frames = [], []
    for name in ANCHOR_NAMES:
        if name == "head":
            a, b = e[NECK], e[JOINT["nose"]]
            pos.append(b)
        elif name == "torso":
            a, b = e[PELVIS], e[NECK]
            pos.append(
                e[[JOINT["left_shoulder"], JOINT["right_shoulder"], JOINT["left_hip"], JOINT["right_hip"]]].mean(axis=0)
            )
        else:
            a, b = e[LIMB_SEGMENTS[name][0]], e[LIMB_SEGMENTS[name][1]]
            pos.append((a + b) / 2)
        frames.append(_frame(a, b))
    return np.array(pos), np.array(frames)


class PoseRig:
    """Animate one source photo; call :meth:`render` once per driving frame, in order."""

    def __init__(self, source_rgb: np.ndarray, source_landmarks: Landmarks, options: RigOptions | None = None) -> None:
        if source_rgb.ndim != 3 or source_rgb.shape[0] != source_rgb.shape[1] or source_rgb.dtype != np.uint8:
            raise InputError("The pose rig needs a square RGB uint8 source image")
        self.options = options or RigOptions()
        self.size = source_rgb.shape[0]
        if self.size < 16:
            raise InputError("The source image is too small for the pose rig (under 16 pixels)")
        self.source_landmarks = source_landmarks
        mask = source_landmarks.mask
        if mask is None:
            mask = skeleton_mask(source_landmarks.points, self.size)
        elif mask.shape != source_rgb.shape[:2]:
            mask = cv2.resize(mask, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        self.source = build_layers(source_rgb, source_landmarks.points, mask, self.options.grid)
        self.reference: Landmarks | None = None
        self.smoother: LandmarkSmoother | None = None
        self.facing = FacingGuard(self.source.points)
        h, k = self.source.grid, self.source.scale
        centres = (np.arange(h) + 0.5) * k - 0.5
        self._low_maps = [np.dstack([layer.alpha_low, layer.reliability_low]) for layer in self.source.layers]
        self._background = self.source.background.astype(np.float32)
        self._identity = np.stack(np.meshgrid(centres, centres), axis=-1).astype(np.float32)
        self._mesh = _JointMesh.of(self.source.layers)
        self._anchors_source = _anchors(self.source.points)

    # -- driving side --------------------------------------------------------------------------------
    def set_reference(self, landmarks: Landmarks) -> None:
        """The driving frame that corresponds to the source pose (default: the first one rendered)."""
        self.reference = landmarks

    def _driving_pose(self, driving: Landmarks | None) -> np.ndarray:
        if driving is not None and self.reference is None:
            self.reference = driving
        driving = self.facing(driving)
        if self.options.smooth and driving is not None and self.smoother is None:
            scale = torso_length(self.reference.points) if self.reference is not None else 1.0
            self.smoother = LandmarkSmoother(
                self.options.fps, scale, min_cutoff=self.options.min_cutoff, beta=self.options.beta
            )
        if self.smoother is not None:
            driving = self.smoother(driving)
        if driving is None or self.reference is None:  # nobody seen yet: the source pose
            return self.source.points
        return retarget(
            self.source.points,
            driving.points,
            self.facing.like_photo(self.reference).points,
            self.options.mode,
            self.options.min_ratio,
        )

    # -- rendering ------------------------------------------------------------------------------------
    def render(self, driving: Landmarks | None, background: Background = "keep") -> tuple[np.ndarray, FrameMotion]:
        """Draw the source in the driving pose. ``None`` means the person was lost in this frame."""
        if background not in ("keep", "white", "green"):
            raise InputError(f"Unknown background {background!r}: use keep, white or green")
        pose = self._driving_pose(driving)
        output, motion = self.render_pose(pose, background)
        if driving is not None:  # where the anchors sit on the driving frame itself, for overlays
            motion.anchors_observed = (_anchors(driving.points)[0] * (2.0 / (self.size - 1)) - 1).astype(np.float32)
        return output, motion

    def render_pose(self, pose: np.ndarray, background: Background = "keep") -> tuple[np.ndarray, FrameMotion]:
        """Draw the source with its joints moved to ``pose`` ((13, 2) pixels in the output)."""
        affines = bone_affines(self.source.points, pose)
        canvas = self._canvas(background)
        moved, maps, covers = self._skin(affines)
        mesh = self._mesh
        for i in range(len(self.source.layers)):
            self._draw_layer(canvas, i, moved[mesh.starts[i] : mesh.starts[i + 1]], maps[i], covers[i])
        output = cv2.convertScaleAbs(canvas.out)  # rounds and saturates to uint8
        bone_weights = canvas.bone_weights
        weights = np.concatenate([bone_weights[..., :1], bone_weights[..., 1:] @ _BONE_TO_ANCHOR.T], axis=-1)
        return output, self._motion(pose, affines, weights, canvas.flow, canvas.confidence)

    def _canvas(self, background: Background) -> _Canvas:
        s, h = self.size, self.source.grid
        if background == "keep":
            out = self._background.copy()
        else:
            out = np.empty((s, s, 3), np.float32)
            out[:] = BACKGROUND_COLOURS[background]
        bone_weights = np.zeros((h, h, len(SKIN_BONES) + 1), np.float32)  # channel 0: background
        bone_weights[..., 0] = 1.0
        return _Canvas(out, self.source.background_reliability_low.copy(), bone_weights, self._identity.copy())

    def _skin(self, affines: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every layer skinned and rasterised at once, on the whole lattice: (moved vertices on the lattice,
        (L, h, h, 2) backward maps, (L, h, h) coverage). Each joint's inner side is kept rigid and the triangles
        that would join its two rigid parts across the fold are left out (:mod:`internet.sources.poserig.mesh`)."""
        mesh, k, h = self._mesh, self.source.scale, self.source.grid
        rigid = np.zeros(len(mesh.vertices))
        rigid[mesh.hinged] = inner_side(bone_angles(affines), mesh.hinge_bones, mesh.hinge_side)
        moved = output_to_grid(skin_vertices(mesh.vertices, mesh.weights, affines, mesh.pivots, rigid), k)
        near = mesh.hinged_triangles
        torn = near[torn_triangles(mesh.triangles[near], mesh.dom, rigid)]
        tri, uv, priority, plane = mesh.triangles, mesh.uv, mesh.priority, mesh.plane
        if len(torn):
            keep = np.ones(len(tri), bool)
            keep[torn] = False
            tri, uv, priority, plane = tri[keep], uv[keep], priority[keep], plane[keep]
        maps, covers = rasterise(moved[tri], uv, priority, h, h, plane, mesh.layers)
        return moved, maps, covers

    def _draw_layer(self, canvas: _Canvas, i: int, moved: np.ndarray, maps: np.ndarray, covers: np.ndarray) -> None:
        """Composite layer ``i`` over the canvas: its pixels, and its share of the lattice's weights, flow and
        confidence."""
        layer, low = self.source.layers[i], self._low_maps[i]
        s, k, h = self.size, self.source.scale, self.source.grid
        # Work only inside the layer's bounding box on the lattice (a 3-cell margin for the extension).
        gx0, gy0 = np.maximum(np.floor(moved.min(axis=0)).astype(int) - 3, 0)
        gx1, gy1 = np.minimum(np.ceil(moved.max(axis=0)).astype(int) + 4, h)
        if gx1 <= gx0 or gy1 <= gy0 or not covers[gy0:gy1, gx0:gx1].any():
            return
        covered = covers[gy0:gy1, gx0:gx1]
        grid_map = extend_map(maps[gy0:gy1, gx0:gx1], covered)
        # Lattice quantities: sample the layer's source-space maps where each output cell comes from.
        at = output_to_grid(grid_map, k)
        sampled = cv2.remap(low, at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

        # Full size: one resize of the backward map, one remap of the layer, "over" compositing.
        x0, y0, x1, y1 = gx0 * k, gy0 * k, min(gx1 * k, s), min(gy1 * k, s)
        full_map = upsample_map(grid_map, k, sampled[..., 0])[: y1 - y0, : x1 - x0]
        rgba = cv2.remap(layer.texture, full_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        box = canvas.out[y0:y1, x0:x1]  # box += (rgb - box) * alpha, in OpenCV: 2.4x numpy's broadcast over RGB
        alpha = cv2.cvtColor(rgba[..., 3], cv2.COLOR_GRAY2RGB).astype(np.float32) * (1.0 / 255.0)
        box += cv2.multiply(cv2.subtract(cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB).astype(np.float32), box), alpha)

        a_low = (sampled[..., 0] * covered)[..., None]
        layer_w = cv2.remap(layer.weights_low, at, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        stretch = conf.stretch_factor(np.where(covered[..., None], grid_map, 0), k)
        sub = np.s_[gy0:gy1, gx0:gx1]
        canvas.confidence[sub] = conf.composite(canvas.confidence[sub], sampled[..., 1] * stretch, a_low[..., 0])
        canvas.bone_weights[sub] *= 1.0 - a_low
        canvas.bone_weights[sub][..., 1:] += layer_w * a_low
        flow = canvas.flow[sub]
        flow += (np.where(covered[..., None], grid_map, flow) - flow) * a_low

    def _motion(
        self,
        pose: np.ndarray,
        affines: np.ndarray,
        weights: np.ndarray,
        flow: np.ndarray,
        confidence: np.ndarray,
    ) -> FrameMotion:
        norm = 2.0 / (self.size - 1)
        side = max(1, self.size // 4)
        if weights.shape[0] != side:  # the mesh lattice -> the (S//4, S//4) motion grid

            def shrink(x: np.ndarray) -> np.ndarray:
                return cv2.resize(x, (side, side), interpolation=cv2.INTER_AREA)

            weights, flow, confidence = shrink(weights), shrink(flow), shrink(confidence)
        weights = weights.transpose(2, 0, 1)
        pos_s, frames_s = self._anchors_source
        pos_d, _ = _anchors(pose)
        lin = affines[:, :, :2]
        torso = (lin[BONE["chest"]] + lin[BONE["pelvis"]]) / 2
        anchor_lin = np.stack([torso if n == "torso" else lin[BONE[n]] for n in ANCHOR_NAMES])
        jac_s = frames_s * norm
        jac_d = anchor_lin @ jac_s
        return FrameMotion(
            anchors_source=(pos_s * norm - 1).astype(np.float32),
            anchors_driving=(pos_d * norm - 1).astype(np.float32),
            jacobians_source=jac_s.astype(np.float32),
            jacobians_driving=jac_d.astype(np.float32),
            weights=(weights / weights.sum(axis=0, keepdims=True)).astype(np.float32),
            flow=(flow * norm - 1).astype(np.float32),
            confidence=np.clip(confidence, 0.0, 1.0).astype(np.float32),
        )


@dataclass
class _Canvas:
    """What :meth:`PoseRig.render_pose` accumulates, layer by layer, back to front."""

    out: np.ndarray  # (S, S, 3) float32 image
    confidence: np.ndarray  # (h, h)
    bone_weights: np.ndarray  # (h, h, B + 1), channel 0 the background
    flow: np.ndarray  # (h, h, 2) backward map, source pixels


@dataclass
class _JointMesh:
    """All layers' meshes as one (vertices of layer i: ``starts[i]:starts[i + 1]``; triangle t on ``plane[t]``)."""

    vertices: np.ndarray  # (V, 2) source pixels
    weights: np.ndarray  # (V, B)
    pivots: np.ndarray  # (V, 2)
    dom: np.ndarray  # (V,) main bone (the heaviest weight)
    hinged: np.ndarray  # (H,) the vertices that bend at an elbow or a knee
    hinge_bones: np.ndarray  # (H, 2) that joint's (parent, child) bones
    hinge_side: np.ndarray  # (H,) each one's side of the joint's bend
    hinged_triangles: np.ndarray  # the triangles with a corner among them
    triangles: np.ndarray  # (T, 3) indices into vertices
    uv: np.ndarray  # (T, 3, 2) the triangles' source positions
    priority: np.ndarray  # (T,)
    plane: np.ndarray  # (T,) layer index
    starts: np.ndarray  # (L + 1,)
    layers: int  # L

    @classmethod
    def of(cls, layers) -> _JointMesh:
        starts = np.cumsum([0] + [len(layer.vertices) for layer in layers])
        triangles = np.concatenate([layer.triangles + start for layer, start in zip(layers, starts)])
        vertices = np.concatenate([layer.vertices for layer in layers])
        weights = np.concatenate([layer.vertex_weights for layer in layers])
        hinge_bones = np.concatenate([layer.hinge_bones for layer in layers])
        hinged = np.nonzero(hinge_bones[:, 0] >= 0)[0]
        return cls(
            vertices=vertices,
            weights=weights,
            pivots=np.concatenate([layer.pivots for layer in layers]),
            dom=np.argmax(weights, axis=1),
            hinged=hinged,
            hinge_bones=hinge_bones[hinged],
            hinge_side=np.concatenate([layer.hinge_side for layer in layers])[hinged],
            hinged_triangles=np.nonzero(np.isin(triangles, hinged).any(axis=1))[0],
            triangles=triangles,
            uv=vertices[triangles],
            priority=np.concatenate([layer.priority for layer in layers]),
            plane=np.concatenate([np.full(len(layer.triangles), i) for i, layer in enumerate(layers)]),
            starts=starts,
            layers=len(layers),
        )


def skeleton_mask(points: np.ndarray, size: int) -> np.ndarray:
    """A rough person mask from the joints alone (capsules around the bones), for providers without masks."""
    e = extend(points)
    t = max(torso_length(points), 4.0)
    mask = np.zeros((size, size), np.uint8)
    torso = e[[JOINT["left_shoulder"], JOINT["right_shoulder"], JOINT["right_hip"], JOINT["left_hip"]]]
    cv2.fillConvexPoly(mask, np.round(torso).astype(np.int32), 1)
    for name, (a, b) in LIMB_SEGMENTS.items():
        width = 0.16 if "arm" in name else 0.22
        cv2.line(
            mask,
            tuple(np.round(e[a]).astype(int)),
            tuple(np.round(e[b]).astype(int)),
            1,
            max(1, int(width * t)),
        )
    cv2.circle(mask, tuple(np.round(e[JOINT["nose"]]).astype(int)), max(1, int(0.3 * t)), 1, -1)
    return mask.astype(np.float32)
