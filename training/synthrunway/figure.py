"""The SynthRunway figure: a clothed 2.5D puppet walking a runway, as rigid textured cards per frame.

A clip is sampled once (`sample_scene`): body proportions, garments, hair, background and a motion program
(walk cycle, turns, poses, approach towards the camera, camera drift, lighting). `Scene.layout(t)` then
gives every card's affine map for frame t, the draw order and the 13 joints (``internet.skeleton`` order)
in pixels. Bodies live in body units (1 = standing height); body coordinates are x = the person's left,
y = up, z = the person's forward direction, with the origin on the floor below the pelvis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from internet.skeleton import JOINT_NAMES
from training.synthrunway.render import FrameLayout, Part
from training.synthrunway.textures import (
    Garment,
    hair_colour,
    random_colour,
    random_garment,
    shade_across,
    skin_colour,
    smooth_noise,
    studio_background,
)

SIDES = (1.0, -1.0)  # left (+x, the person's left), right


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def _hull(points: np.ndarray) -> np.ndarray:
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
    return hull.astype(np.float64)


def _perp(v: np.ndarray) -> np.ndarray:
    """Screen vector turned by +90° (screen y points down): up (0,-1) -> right (1,0)."""
    return np.array([-v[1], v[0]])


@dataclass(frozen=True)
class Card:
    """A convex outline in body-local units (x, y up), rasterised at ``texel`` texels per unit."""

    outline: np.ndarray  # (N, 2) body-local units
    texel: float  # texels per body unit
    margin: int = 2

    @property
    def origin(self) -> tuple[float, float]:
        return float(self.outline[:, 0].min()), float(self.outline[:, 1].max())

    @property
    def shape(self) -> tuple[int, int]:
        extent = self.outline.max(axis=0) - self.outline.min(axis=0)
        w, h = np.ceil(extent * self.texel).astype(int) + 2 * self.margin + 1
        return int(h), int(w)

    def polygon(self) -> np.ndarray:
        """Outline in texel coordinates (x right, y down)."""
        x0, y1 = self.origin
        return np.stack(
            [
                self.margin + (self.outline[:, 0] - x0) * self.texel,
                self.margin + (y1 - self.outline[:, 1]) * self.texel,
            ],
            axis=1,
        )

    def grids(self) -> tuple[np.ndarray, np.ndarray]:
        """Body-local coordinates (bx, by) of every texel centre."""
        h, w = self.shape
        x0, y1 = self.origin
        ty, tx = np.mgrid[0:h, 0:w].astype(np.float32)
        return x0 + (tx - self.margin) / self.texel, y1 - (ty - self.margin) / self.texel

    def affine(self, origin: np.ndarray, x_axis: np.ndarray, y_axis: np.ndarray) -> np.ndarray:
        """Texel -> screen map from the screen position of body-local (0, 0) and its axes."""
        x0, y1 = self.origin
        linear = np.stack([x_axis / self.texel, -y_axis / self.texel], axis=1)
        offset = origin + x_axis * (x0 - self.margin / self.texel) + y_axis * (y1 + self.margin / self.texel)
        return np.concatenate([linear, offset[:, None]], axis=1)


@dataclass(frozen=True)
class Body:
    hip: float  # half width between hip joints
    shoulder: float
    thigh: float
    shin: float
    ankle: float  # ankle height above the floor
    torso: float  # hip line to shoulder line
    neck: float
    head_rx: float
    head_ry: float
    upper_arm: float
    forearm: float
    thigh_r: tuple[float, float]
    shin_r: tuple[float, float]
    upper_arm_r: tuple[float, float]
    forearm_r: tuple[float, float]
    hand_r: float


def sample_body(rng: np.random.Generator) -> Body:
    u = rng.uniform
    legs = u(0.95, 1.06)
    build = u(0.85, 1.2)
    return Body(
        hip=u(0.05, 0.065) * build,
        shoulder=u(0.085, 0.11) * build,
        thigh=0.245 * legs,
        shin=0.228 * legs,
        ankle=0.04,
        torso=u(0.285, 0.315),
        neck=u(0.025, 0.04),
        head_rx=u(0.048, 0.057),
        head_ry=u(0.064, 0.072),
        upper_arm=u(0.16, 0.18),
        forearm=u(0.135, 0.15),
        thigh_r=(u(0.045, 0.058) * build, u(0.03, 0.038)),
        shin_r=(u(0.03, 0.037), u(0.02, 0.026)),
        upper_arm_r=(u(0.026, 0.034) * build, u(0.022, 0.027)),
        forearm_r=(u(0.021, 0.026), u(0.016, 0.02)),
        hand_r=u(0.018, 0.022),
    )


@dataclass(frozen=True)
class Outfit:
    top: Garment
    bottom: Garment
    kind: str  # "trousers", "shorts", "skirt", "dress", "coat"
    sleeve: float  # fraction of the arm covered: 0 sleeveless ... 1 long
    hem: float  # skirt/coat length below the hip line, body units (0 when none)
    flare: float  # extra half width at the hem
    legwear: np.ndarray  # colour of bare legs / tights
    shoes: np.ndarray


def sample_outfit(rng: np.random.Generator, texel: float, skin: np.ndarray) -> Outfit:
    kind = ("trousers", "shorts", "skirt", "dress", "coat")[rng.choice(5, p=[0.3, 0.1, 0.25, 0.2, 0.15])]
    top = random_garment(rng, texel)
    bottom = top if kind == "dress" else random_garment(rng, texel)
    sleeve = float(rng.choice([0.0, 0.35, 0.6, 1.0])) if kind != "coat" else 1.0
    hem = {
        "skirt": rng.uniform(0.12, 0.34),
        "dress": rng.uniform(0.15, 0.38),
        "coat": rng.uniform(0.25, 0.36),
    }
    tights = random_colour(rng, (0.0, 0.4)) * 0.5
    legwear = tights if rng.random() < 0.3 else skin
    return Outfit(
        top=top,
        bottom=bottom,
        kind=kind,
        sleeve=sleeve,
        hem=float(hem.get(kind, 0.0)),
        flare=float(rng.uniform(0.0, 0.08)),
        legwear=legwear.astype(np.float32),
        shoes=(random_colour(rng) * rng.uniform(0.2, 0.8)).astype(np.float32),
    )


@dataclass(frozen=True)
class Motion:
    """Per-frame motion curves, all arrays of length F."""

    phase: np.ndarray  # walk cycle phase (radians)
    amp: np.ndarray  # walk amplitude 0..1
    yaw: np.ndarray  # facing angle (0 = towards the camera)
    scale: np.ndarray  # pixels per body unit
    ground: np.ndarray  # (F, 2) screen point on the floor below the pelvis
    drift: np.ndarray  # (F, 2) camera pan in pixels
    zoom: np.ndarray  # camera zoom factor
    gain: np.ndarray  # lighting gain
    thigh_swing: float
    knee_bend: float
    arm_swing: float
    arm_out: float
    elbow: float
    hand_on_hip: tuple[bool, bool]  # left, right
    head_nod: float


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _wobble(rng: np.random.Generator, times: np.ndarray, amplitude: float, max_hz: float) -> np.ndarray:
    """A smooth random curve: the sum of two slow sinusoids."""
    out = np.zeros_like(times)
    for _ in range(2):
        out += (
            0.5
            * amplitude
            * np.sin(2 * np.pi * rng.uniform(0.03, max_hz) * times + rng.uniform(0, 2 * np.pi))
        )
    return out


def sample_motion(rng: np.random.Generator, frames: int, fps: float, size: int) -> tuple[Motion, float]:
    """A motion program and the horizon height (pixels) it assumes."""
    times = np.arange(frames) / fps
    duration = max(frames / fps, 1e-3)
    cadence = rng.uniform(0.8, 1.05)  # gait cycles per second
    phase = 2 * np.pi * cadence * times + rng.uniform(0, 2 * np.pi)
    amp = np.ones(frames)
    yaw = rng.uniform(-0.5, 0.5) + _wobble(rng, times, 0.3, 0.2)
    event = rng.choice(3, p=[0.45, 0.3, 0.25])
    start = rng.uniform(0.25, 0.65) * duration
    if event == 0:  # turn around and walk away
        length = rng.uniform(0.6, 1.2)
        progress = _smoothstep((times - start) / length)
        yaw = yaw + rng.choice([-1, 1]) * np.pi * progress
        amp = amp - 0.6 * np.sin(np.pi * np.clip((times - start) / length, 0, 1))
    elif event == 1:  # stop, pose hip-out to one side, walk on
        length = rng.uniform(1.0, 1.6)
        bump = np.sin(np.pi * np.clip((times - start) / length, 0, 1))
        yaw = yaw + rng.choice([-1, 1]) * rng.uniform(0.6, 1.3) * bump
        amp = amp - 0.9 * bump
    phase = phase[0] + np.concatenate([[0], np.cumsum(np.diff(phase) * (0.4 + 0.6 * amp[1:]))])

    # Walk on the floor: distance to the camera shrinks when walking towards it (weak perspective).
    speed = rng.uniform(0.25, 0.5)
    depth0 = rng.uniform(5.0, 8.0)
    depth, lateral = np.empty(frames), np.empty(frames)
    d, x = depth0, 0.0
    for i in range(frames):
        depth[i], lateral[i] = d, x
        d = max(d - speed * amp[i] * np.cos(yaw[i]) / fps, 2.5)
        x += speed * amp[i] * np.sin(yaw[i]) / fps
    relative = depth0 / depth
    s0 = rng.uniform(0.72, 0.9) * size / relative.max()
    scale = s0 * relative
    camera_height = rng.uniform(0.45, 1.0)  # body units: the horizon crosses the body at this height
    reach = relative.max() * s0
    low, high = 0.02 * size - reach * (camera_height - 1.03), 0.97 * size - reach * camera_height
    horizon = rng.uniform(low, max(low, high))
    floor_y = horizon + camera_height * scale
    screen_x = scale * lateral
    span = screen_x.max() - screen_x.min()
    if span > 0.5 * size:
        screen_x *= 0.5 * size / span
    screen_x += size / 2 - 0.5 * (screen_x.max() + screen_x.min()) + rng.uniform(-0.08, 0.08) * size
    ground = np.stack([screen_x, floor_y], axis=1)

    drift = np.stack([_wobble(rng, times, rng.uniform(0, 0.04) * size, 0.3) for _ in range(2)], axis=1)
    zoom = 1 + _wobble(rng, times, rng.uniform(0, 0.05), 0.2)
    gain = 1 + (rng.random() < 0.5) * _wobble(rng, times, rng.uniform(0, 0.05), 0.12)
    hips = rng.random(2) < 0.12
    motion = Motion(
        phase=phase,
        amp=amp,
        yaw=yaw,
        scale=scale,
        ground=ground,
        drift=drift,
        zoom=zoom,
        gain=gain,
        thigh_swing=rng.uniform(0.25, 0.45),
        knee_bend=rng.uniform(0.3, 0.7),
        arm_swing=rng.uniform(0.1, 0.45),
        arm_out=rng.uniform(0.05, 0.22),
        elbow=rng.uniform(0.05, 0.45),
        hand_on_hip=(bool(hips[0]), bool(hips[1])),
        head_nod=rng.uniform(0.0, 0.06),
    )
    return motion, horizon


@dataclass
class Skeleton3D:
    """Body-frame joint positions for one frame."""

    points: dict[str, np.ndarray] = field(default_factory=dict)


def _direction(side: float, out: float, swing: float) -> np.ndarray:
    """Unit limb direction from a sideways angle (outwards) and a forward swing angle, hanging down at 0."""
    return np.array([side * np.sin(out), -np.cos(out) * np.cos(swing), np.cos(out) * np.sin(swing)])


def pose(body: Body, motion: Motion, t: int) -> Skeleton3D:
    """Joint positions in body coordinates for frame t (walk cycle, arm swing, hands on hips)."""
    amp, phi = motion.amp[t], motion.phase[t]
    skel = Skeleton3D()
    legs = {}
    for side, offset in zip(SIDES, (0.0, np.pi), strict=True):
        leg_phase = phi + offset
        thigh = amp * motion.thigh_swing * np.sin(leg_phase)
        knee = 0.06 + amp * motion.knee_bend * max(0.0, np.cos(leg_phase - 0.3)) ** 1.5
        hip = np.array([side * body.hip, 0.0, 0.0])
        k = hip + body.thigh * _direction(side, 0.03, thigh)
        a = k + body.shin * _direction(side, 0.02, thigh - knee)
        legs[side] = (hip, k, a)
    pelvis_height = body.ankle - min(a[1] for _, _, a in legs.values())
    lift = np.array([0.0, pelvis_height, 0.0])
    sway = np.array([0.012 * amp * np.sin(phi), 0.0, 0.0])
    names = {1.0: "left", -1.0: "right"}
    for side, (hip, k, a) in legs.items():
        skel.points[f"{names[side]}_hip"] = hip + lift + sway
        skel.points[f"{names[side]}_knee"] = k + lift + sway
        skel.points[f"{names[side]}_ankle"] = a + lift + sway
    twist = 0.12 * amp * np.sin(phi)
    shoulder_y = pelvis_height + body.torso
    for side, offset in zip(SIDES, (0.0, np.pi), strict=True):
        name = names[side]
        shoulder = np.array(
            [side * body.shoulder * np.cos(twist), shoulder_y, -side * body.shoulder * np.sin(twist)]
        )
        shoulder = shoulder + sway * 0.5
        hand_on_hip = motion.hand_on_hip[0 if side > 0 else 1]
        if hand_on_hip:
            elbow = shoulder + body.upper_arm * _direction(side, 0.6, -0.15)
            target = np.array([side * (body.hip + 0.045), pelvis_height + 0.03, 0.0])
            to_hip = target - elbow
            wrist = elbow + body.forearm * to_hip / np.linalg.norm(to_hip)
        else:
            swing = -amp * motion.arm_swing * np.sin(phi + offset)
            elbow = shoulder + body.upper_arm * _direction(side, motion.arm_out, swing)
            flex = motion.elbow + amp * 0.35 * max(0.0, np.sin(-(phi + offset)))
            wrist = elbow + body.forearm * _direction(side, motion.arm_out * 0.6, swing + flex)
        skel.points[f"{name}_shoulder"] = shoulder
        skel.points[f"{name}_elbow"] = elbow
        skel.points[f"{name}_wrist"] = wrist
    neck_base = np.array([0.0, shoulder_y + 0.012, 0.0]) + sway * 0.5
    skel.points["neck_base"] = neck_base
    nod = motion.head_nod * np.sin(2 * phi)
    head = neck_base + np.array([0.0, body.neck + body.head_ry * 0.85, 0.01 * np.sin(nod)])
    skel.points["head"] = head
    skel.points["nose"] = head + np.array([0.0, -0.012, body.head_rx * 1.05])
    skel.points["pelvis"] = np.array([0.0, pelvis_height, 0.0]) + sway
    return skel


def _lateral_scale(yaw: float, thickness: float) -> float:
    """Signed width factor of a card turned by ``yaw``: mirrored when seen from behind, never thinner than
    ``thickness`` (the body's depth shows at side view)."""
    c = np.cos(yaw)
    return float(np.sign(c) if c != 0 else 1.0) * (thickness + (1 - thickness) * abs(c))


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one clip: the parts and the per-frame motion."""

    parts: list[Part]
    body: Body
    outfit: Outfit
    motion: Motion
    cards: dict[str, Card]
    index: dict[str, int]  # part name -> index in ``parts``
    skirt_rest: np.ndarray | None  # (3, 3, 2) rest positions of the skirt mesh vertices (texels)
    size: int
    background_size: int
    background_offset: np.ndarray

    def project(self, point: np.ndarray, t: int) -> np.ndarray:
        """Screen position (pixels) of a body-frame point at frame t, camera included."""
        m = self.motion
        yaw = m.yaw[t]
        x_cam = point[0] * np.cos(yaw) + point[2] * np.sin(yaw)
        s = m.scale[t]
        raw = m.ground[t] + s * np.array([x_cam, -point[1]])
        centre = np.array([self.size / 2, self.size / 2])
        return centre + m.zoom[t] * (raw - centre) + m.drift[t]

    def depth(self, point: np.ndarray, t: int) -> float:
        """Distance towards the camera of a body-frame point (larger = closer)."""
        yaw = self.motion.yaw[t]
        return float(-point[0] * np.sin(yaw) + point[2] * np.cos(yaw))

    def layout(self, t: int) -> tuple[FrameLayout, np.ndarray]:
        """Affine maps, draw order and the (J, 2) pixel joints of frame t."""
        m, body = self.motion, self.body
        skel = pose(body, m, t)
        p = skel.points
        screen = {name: self.project(point, t) for name, point in p.items()}
        s = m.scale[t] * m.zoom[t]
        yaw = m.yaw[t]
        affines = np.zeros((len(self.parts), 2, 3))
        facing = np.cos(yaw) >= 0

        # Background: camera pan with parallax, zoom, fixed offset.
        bg_zoom = 1 + 0.5 * (m.zoom[t] - 1)
        half = (self.background_size - 1) / 2
        shift = np.array([self.size / 2, self.size / 2]) + self.background_offset + 0.5 * m.drift[t]
        affines[0] = np.array(
            [[bg_zoom, 0, shift[0] - bg_zoom * half], [0, bg_zoom, shift[1] - bg_zoom * half]]
        )

        up = screen["neck_base"] - screen["pelvis"]
        up_unit = up / max(np.linalg.norm(up), 1e-6)
        lateral = _perp(up_unit) * s * _lateral_scale(yaw, 0.45)
        torso_up = up / (p["neck_base"][1] - p["pelvis"][1])
        affines[self.index["torso"]] = self.cards["torso"].affine(screen["pelvis"], lateral, torso_up)

        head_up = np.array([0.0, -s])
        face_lateral = np.array([s * _lateral_scale(yaw, 0.8), 0.0])
        affines[self.index["face"]] = self.cards["face"].affine(screen["head"], face_lateral, head_up)
        affines[self.index["bangs"]] = self.cards["bangs"].affine(screen["head"], face_lateral, head_up)
        hair_lateral = np.array([s * (0.9 + 0.1 * abs(np.cos(yaw))), 0.0])
        affines[self.index["hair"]] = self.cards["hair"].affine(screen["head"], hair_lateral, head_up)

        def limb(name: str, a: str, b: str) -> None:
            card = self.cards[name]
            length = np.linalg.norm(p[b] - p[a])
            along = screen[b] - screen[a]
            norm = np.linalg.norm(along)
            if norm < 0.35 * s * length:  # nearly pointing at the camera: keep the card well conditioned
                direction = along / norm if norm > 1e-6 else np.array([0.0, 1.0])
                along = direction * 0.35 * s * length
            across = _perp(along / np.linalg.norm(along)) * s
            affines[self.index[name]] = card.affine(screen[a], along / length, across)

        limb("neck", "neck_base", "head")
        for side in ("left", "right"):
            limb(f"{side}_thigh", f"{side}_hip", f"{side}_knee")
            limb(f"{side}_shin", f"{side}_knee", f"{side}_ankle")
            limb(f"{side}_upper_arm", f"{side}_shoulder", f"{side}_elbow")
            limb(f"{side}_forearm", f"{side}_elbow", f"{side}_wrist")
            forward = np.array([0.0, 0.0, 1.0])
            toe = p[f"{side}_ankle"] + forward * 0.03 + np.array([0.0, -0.022, 0.0])
            foot_width = 1.0 + 2.0 * abs(np.sin(yaw))
            affines[self.index[f"{side}_shoe"]] = self.cards[f"{side}_shoe"].affine(
                self.project(toe, t), np.array([s * foot_width, 0.0]), np.array([0.0, -s])
            )
        if self.skirt_rest is not None:
            self._skirt_affines(affines, p, screen, lateral, up_unit, s, t)

        # Draw order: back arms, legs, skirt, torso, neck, head, front arms.
        def arm_key(side: str) -> float:
            key = self.depth(p[f"{side}_elbow"], t) + self.depth(p[f"{side}_wrist"], t) * 0.5
            return key + (0.06 if m.hand_on_hip[0 if side == "left" else 1] else 0.0)

        arms = sorted(("left", "right"), key=arm_key)
        back_arms = [a for a in arms if arm_key(a) < 0]
        front_arms = [a for a in arms if arm_key(a) >= 0]
        legs = sorted(("left", "right"), key=lambda side: self.depth(p[f"{side}_knee"], t))
        order = [0] + ([self.index["hair"]] if facing else [])
        for side in back_arms:
            order += [self.index[f"{side}_upper_arm"], self.index[f"{side}_forearm"]]
        for side in legs:
            order += [self.index[f"{side}_thigh"], self.index[f"{side}_shin"], self.index[f"{side}_shoe"]]
        order += [i for name, i in self.index.items() if name.startswith("skirt")]
        order += [self.index["torso"], self.index["neck"]]
        head = ["face", "bangs"] if facing else ["face", "bangs", "hair"]
        order += [self.index[name] for name in head]
        for side in front_arms:
            order += [self.index[f"{side}_upper_arm"], self.index[f"{side}_forearm"]]

        joints = np.stack([screen[name] for name in JOINT_NAMES]).astype(np.float32)
        layout = FrameLayout(affines=affines, order=np.array(order), gain=float(m.gain[t]))
        return layout, joints

    def _skirt_affines(
        self,
        affines: np.ndarray,
        p: dict,
        screen: dict,
        lateral: np.ndarray,
        up_unit: np.ndarray,
        s: float,
        t: int,
    ) -> None:
        """Piecewise-affine skirt: waist row follows the torso, hem row spans the legs at hem height."""
        body, outfit = self.body, self.outfit
        side_unit = lateral / max(np.linalg.norm(lateral), 1e-6)
        width_factor = np.linalg.norm(lateral) / s
        waist = screen["pelvis"] + up_unit * s * 0.05
        top_half = (body.hip + body.thigh_r[0] * 0.9) * s * width_factor
        hem_points = []
        for side in ("left", "right"):
            hip, knee, ankle = p[f"{side}_hip"], p[f"{side}_knee"], p[f"{side}_ankle"]
            along = outfit.hem + 0.05
            if along <= body.thigh:
                point = hip + (knee - hip) * along / body.thigh
            else:
                point = knee + (ankle - knee) * min((along - body.thigh) / body.shin, 1.0)
            hem_points.append(self.project(point, t))
        hem_centre = 0.5 * (hem_points[0] + hem_points[1])
        offsets = [float(np.dot(q - hem_centre, side_unit)) for q in hem_points]
        spread = body.thigh_r[0] * s * 1.1 + outfit.flare * s * width_factor
        hem_left, hem_right = min(offsets) - spread, max(offsets) + spread
        rows = np.zeros((3, 3, 2))
        rows[0] = [waist - side_unit * top_half, waist, waist + side_unit * top_half]
        rows[2] = [
            hem_centre + side_unit * hem_left,
            hem_centre + side_unit * 0.5 * (hem_left + hem_right),
            hem_centre + side_unit * hem_right,
        ]
        rows[1] = 0.5 * (rows[0] + rows[2])
        rest = self.skirt_rest
        k = 0
        for r in range(2):
            for c in range(2):
                for tri in _quad_triangles(r, c):
                    src = np.array([rest[i, j] for i, j in tri], np.float32)
                    dst = np.array([rows[i, j] for i, j in tri], np.float32)
                    affines[self.index[f"skirt{k}"]] = cv2.getAffineTransform(src, dst)
                    k += 1


def _quad_triangles(r: int, c: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    return (((r, c), (r, c + 1), (r + 1, c + 1)), ((r, c), (r + 1, c + 1), (r + 1, c)))


def _limb_card(a: float, r0: float, r1: float, texel: float, hand: float = 0.0) -> Card:
    points = [_ellipse(0, 0, r0, r0, 16), _ellipse(a, 0, r1, r1, 16)]
    if hand > 0:
        points.append(_ellipse(a + hand * 1.6, 0, hand, hand * 0.9, 16))
    return Card(_hull(np.concatenate(points)), texel)


def _covered_limb(
    card: Card, garment: Garment | None, skin: np.ndarray, cover: float, radius: float
) -> np.ndarray:
    """Limb texture: garment for local x < cover (body units from the joint), skin after; shaded across."""
    h, w = card.shape
    bx, _ = card.grids()
    skin_tex = np.broadcast_to(skin, (h, w, 3)).astype(np.float32)
    if garment is None:
        tex = skin_tex
    else:
        cloth = garment.texture(h, w)
        tex = np.where((bx < cover)[..., None], cloth, skin_tex)
    axis_v = card.margin + card.origin[1] * card.texel
    return shade_across(tex, axis_v, radius * card.texel * 1.05, 0.35)


def sample_scene(rng: np.random.Generator, frames: int, fps: float, size: int) -> Scene:
    """Sample a person, an outfit, a backdrop and a motion program for one clip."""
    texel = 0.8 * size  # texels per body unit, about one texel per pixel at the usual figure size
    body = sample_body(rng)
    skin = skin_colour(rng)
    outfit = sample_outfit(rng, texel, skin)
    hair = hair_colour(rng)
    motion, horizon = sample_motion(rng, frames, fps, size)

    parts: list[Part] = []
    cards: dict[str, Card] = {}
    index: dict[str, int] = {}

    def add(
        name: str,
        card: Card | None,
        texture: np.ndarray,
        surface: int | None = None,
        polygon: np.ndarray | None = None,
        hard: np.ndarray | None = None,
        person: bool = True,
    ) -> None:
        if card is not None:
            cards[name] = card
            polygon = card.polygon()
        assert polygon is not None
        hard = np.zeros(len(polygon), bool) if hard is None else hard
        index[name] = len(parts)
        parts.append(Part(name, len(parts) if surface is None else surface, polygon, hard, texture, person))

    bg_size = int(np.ceil(size * 1.35))
    offset = rng.uniform(-0.05, 0.05, size=2) * size
    bg_horizon = ((horizon - size / 2 - offset[1]) + (bg_size - 1) / 2) / bg_size
    background = studio_background(rng, bg_size, float(np.clip(bg_horizon, 0.05, 0.95)))
    box = np.array(
        [[-0.5, -0.5], [bg_size - 0.5, -0.5], [bg_size - 0.5, bg_size - 0.5], [-0.5, bg_size - 0.5]]
    )
    add("background", None, background, polygon=box, hard=np.ones(4, bool), person=False)

    top_garment = outfit.bottom if outfit.kind == "coat" else outfit.top
    torso = Card(
        _hull(
            np.array(
                [
                    [-(body.hip + 0.04), -0.05],
                    [body.hip + 0.04, -0.05],
                    [body.shoulder + 0.03, body.torso - 0.035],
                    [-(body.shoulder + 0.03), body.torso - 0.035],
                    [body.shoulder - 0.005, body.torso + 0.012],
                    [-(body.shoulder - 0.005), body.torso + 0.012],
                    [0.03, body.torso + 0.02],
                    [-0.03, body.torso + 0.02],
                ]
            )
        ),
        texel,
    )
    h, w = torso.shape
    torso_tex = top_garment.texture(h, w)
    bx, by = torso.grids()
    neckline = (np.abs(bx) < 0.028) & (by > body.torso - 0.01 - 0.02 * rng.random())
    torso_tex = np.where(neckline[..., None], skin, torso_tex)
    shade = 1 - 0.25 * np.clip(np.abs(bx) / (body.shoulder + 0.03), 0, 1) ** 2
    add("torso", torso, (torso_tex * shade[..., None]).astype(np.float32))

    neck = _limb_card(body.neck + body.head_ry * 0.85, 0.022, 0.022, texel)
    add("neck", neck, _covered_limb(neck, None, skin * 0.92, 0.0, 0.022))

    long_hair = rng.random() < 0.5
    hair_card = Card(
        _ellipse(
            0,
            -0.02 if long_hair else 0.004,
            body.head_rx + 0.014,
            body.head_ry + (0.05 if long_hair else 0.012),
        ),
        texel,
    )
    h, w = hair_card.shape
    hair_tex = hair * (1 + 0.15 * smooth_noise(rng, h, w, 3.0)[..., None])
    add("hair", hair_card, np.clip(hair_tex, 0, 1).astype(np.float32))

    face = Card(_ellipse(0, 0, body.head_rx, body.head_ry), texel)
    h, w = face.shape
    bx, by = face.grids()
    face_tex = np.broadcast_to(skin, (h, w, 3)).copy()
    features = np.zeros((h, w), np.float32)
    for ex in (-0.4, 0.4):
        features = np.maximum(
            features, ((bx - ex * body.head_rx) ** 2 / 0.009**2 + (by - 0.005) ** 2 / 0.006**2 < 1)
        )
    features = np.maximum(features, (np.abs(bx) < 0.018) & (np.abs(by + 0.035) < 0.004))
    face_tex = face_tex * (1 - 0.7 * features[..., None])
    face_tex *= (1 - 0.2 * np.clip((bx**2 / body.head_rx**2 + by**2 / body.head_ry**2), 0, 1))[..., None]
    add("face", face, face_tex.astype(np.float32))

    cap = _ellipse(0, 0, body.head_rx + 0.006, body.head_ry + 0.01, 32)
    cut = body.head_ry * rng.uniform(0.2, 0.55)
    bangs = Card(
        _hull(
            np.concatenate(
                [
                    cap[cap[:, 1] >= cut],
                    [[-(body.head_rx + 0.006) * 0.9, cut], [(body.head_rx + 0.006) * 0.9, cut]],
                ]
            )
        ),
        texel,
    )
    h, w = bangs.shape
    add(
        "bangs",
        bangs,
        np.clip(hair * (1 + 0.15 * smooth_noise(rng, h, w, 2.5)[..., None]), 0, 1).astype(np.float32),
    )

    sleeve = outfit.sleeve * (body.upper_arm + body.forearm)
    leg_garment = outfit.bottom if outfit.kind in ("trousers", "shorts") else None
    leg_cover = {"trousers": 2.0, "shorts": body.thigh * 0.45}.get(outfit.kind, 0.0)
    for side in ("left", "right"):
        arm = _limb_card(body.upper_arm, *body.upper_arm_r, texel)
        add(f"{side}_upper_arm", arm, _covered_limb(arm, top_garment, skin, sleeve, body.upper_arm_r[0]))
        fore = _limb_card(body.forearm, *body.forearm_r, texel, hand=body.hand_r)
        add(
            f"{side}_forearm",
            fore,
            _covered_limb(fore, top_garment, skin, sleeve - body.upper_arm, body.forearm_r[0]),
        )
        thigh = _limb_card(body.thigh, *body.thigh_r, texel)
        legwear = outfit.legwear
        add(f"{side}_thigh", thigh, _covered_limb(thigh, leg_garment, legwear, leg_cover, body.thigh_r[0]))
        shin = _limb_card(body.shin, *body.shin_r, texel)
        add(
            f"{side}_shin",
            shin,
            _covered_limb(shin, leg_garment, legwear, leg_cover - body.thigh, body.shin_r[0]),
        )
        shoe = Card(_ellipse(0, 0, 0.026, 0.02, 16), texel)
        h, w = shoe.shape
        add(
            f"{side}_shoe",
            shoe,
            shade_across(np.broadcast_to(outfit.shoes, (h, w, 3)).copy(), h / 2, h / 2, 0.4),
        )

    skirt_rest = None
    if outfit.hem > 0:
        top_half = body.hip + body.thigh_r[0] * 0.9
        hem_half = top_half + outfit.flare + 0.03
        tw, th = int(np.ceil(2 * hem_half * texel)) + 6, int(np.ceil((outfit.hem + 0.05) * texel)) + 6
        skirt_rest = np.zeros((3, 3, 2))
        cx = (tw - 1) / 2
        for r, (half, y) in enumerate(
            ((top_half, 3.0), (0.5 * (top_half + hem_half), 3 + (th - 6) / 2), (hem_half, float(th - 3)))
        ):
            skirt_rest[r] = [[cx - half * texel, y], [cx, y], [cx + half * texel, y]]
        skirt_tex = outfit.bottom.texture(th, tw)
        rows = np.arange(th, dtype=np.float32)[:, None]
        folds = (
            1 - 0.12 * (0.5 + 0.5 * np.cos(np.arange(tw)[None, :] / max(tw, 1) * 2 * np.pi * 5)) * rows / th
        )
        skirt_tex = (skirt_tex * folds[..., None]).astype(np.float32)
        surface = len(parts)
        k = 0
        for r in range(2):
            for c in range(2):
                for tri in _quad_triangles(r, c):
                    polygon = np.array([skirt_rest[i, j] for i, j in tri])
                    hard = np.array([not _boundary_edge(tri[e], tri[(e + 1) % 3]) for e in range(3)])
                    add(f"skirt{k}", None, skirt_tex, surface=surface, polygon=polygon, hard=hard)
                    k += 1

    return Scene(
        parts=parts,
        body=body,
        outfit=outfit,
        motion=motion,
        cards=cards,
        index=index,
        skirt_rest=skirt_rest,
        size=size,
        background_size=bg_size,
        background_offset=offset,
    )


def _boundary_edge(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether the mesh edge between vertices a and b (row, col) lies on the outline of the 3x3 grid."""
    return (a[0] == b[0] and a[0] in (0, 2)) or (a[1] == b[1] and a[1] in (0, 2))
