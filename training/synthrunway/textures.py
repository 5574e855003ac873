"""Procedural garment, skin, hair and studio-background textures for SynthRunway.

All textures are float32 RGB in [0, 1]. Garment patterns are functions of texel coordinates, so every part
cut from one garment (torso, sleeves, skirt) shows the same fabric at the same scale.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

PATTERNS = ("solid", "stripes", "checks", "dots", "fine", "blotches")


def random_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.2, 0.9)) -> np.ndarray:
    """A random fabric colour (HSV sampled, returned as RGB)."""
    hue = rng.random()
    sat = rng.uniform(*saturation)
    value = rng.uniform(0.25, 0.95)
    return np.array(colorsys.hsv_to_rgb(hue, sat, value), np.float32)


def skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A skin tone between light and dark."""
    light, dark = np.array([0.96, 0.80, 0.69]), np.array([0.36, 0.22, 0.15])
    mix = rng.random()
    tint = rng.uniform(-0.03, 0.03, size=3)
    return np.clip((1 - mix) * light + mix * dark + tint, 0, 1).astype(np.float32)


def hair_colour(rng: np.random.Generator) -> np.ndarray:
    palette = np.array(
        [
            [0.06, 0.05, 0.05],
            [0.25, 0.15, 0.08],
            [0.45, 0.30, 0.15],
            [0.80, 0.65, 0.40],
            [0.55, 0.20, 0.10],
            [0.70, 0.70, 0.70],
        ],
        np.float32,
    )
    return np.clip(palette[rng.integers(len(palette))] + rng.uniform(-0.04, 0.04, 3), 0, 1).astype(np.float32)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Band-limited noise in [-1, 1] with features about ``cell`` texels wide."""
    gh, gw = max(2, int(np.ceil(height / cell)) + 2), max(2, int(np.ceil(width / cell)) + 2)
    coarse = rng.uniform(-1, 1, size=(gh, gw)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _soft_square_wave(phase: np.ndarray, duty: float, sharpness: float) -> np.ndarray:
    """Periodic 0/1 band with smoothed edges; phase in cycles."""
    wave = np.cos(2 * np.pi * phase) - np.cos(np.pi * duty)
    return 1 / (1 + np.exp(-sharpness * wave))


@dataclass(frozen=True)
class Garment:
    """A fabric: a pattern with colours, fixed by a seed so every part made of it matches."""

    pattern: str
    colours: np.ndarray  # (3, 3) RGB: base, first and second accent
    period: float  # texels
    angle: float  # radians
    seed: int

    def texture(self, height: int, width: int) -> np.ndarray:
        """(height, width, 3) float32 texture in texel coordinates."""
        rng = np.random.default_rng(self.seed)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        c, s = np.cos(self.angle), np.sin(self.angle)
        u, v = (c * xs + s * ys) / self.period, (-s * xs + c * ys) / self.period
        base, accent, second = self.colours
        if self.pattern == "solid":
            weight = np.zeros_like(u)
        elif self.pattern == "stripes":
            weight = _soft_square_wave(u, rng.uniform(0.25, 0.6), 6.0)
        elif self.pattern == "checks":
            a, b = _soft_square_wave(u, 0.5, 5.0), _soft_square_wave(v, 0.5, 5.0)
            weight = 0.5 * a + 0.5 * b
        elif self.pattern == "fine":  # pinstripes / fine checks close to the sampling limit: they flicker
            weight = 0.5 + 0.5 * np.cos(2 * np.pi * u)
            if rng.random() < 0.5:
                weight = 0.5 * weight + 0.25 + 0.25 * np.cos(2 * np.pi * v)
        elif self.pattern == "dots":
            cu, cv = u - np.round(u), v - np.round(v + 0.5 * (np.round(u) % 2))
            radius = rng.uniform(0.18, 0.35)
            weight = np.clip((radius - np.sqrt(cu**2 + cv**2)) * self.period * 0.8 + 0.5, 0, 1)
        else:  # blotches: a floral/camouflage print from thresholded smooth noise
            n1 = smooth_noise(rng, height, width, self.period)
            n2 = smooth_noise(rng, height, width, self.period * 0.7)
            weight = np.clip((n1 - 0.1) * 4, 0, 1)
            second_weight = np.clip((n2 - 0.3) * 4, 0, 1)
            out = base + weight[..., None] * (accent - base)
            out = out + second_weight[..., None] * (second - out)
            return _weave(out, rng).astype(np.float32)
        out = base + weight[..., None] * (accent - base)
        return _weave(out, rng).astype(np.float32)


def _weave(texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Low-contrast fabric grain so solid areas are not flat."""
    h, w = texture.shape[:2]
    grain = smooth_noise(rng, h, w, 6.0)
    return np.clip(texture * (1 + 0.05 * grain[..., None]), 0, 1)


def random_garment(rng: np.random.Generator, texel_scale: float) -> Garment:
    """A garment with a random pattern; ``texel_scale`` is texels per body height (sets pattern sizes)."""
    pattern = PATTERNS[rng.choice(len(PATTERNS), p=[0.2, 0.22, 0.18, 0.12, 0.16, 0.12])]
    colours = np.stack([random_colour(rng) for _ in range(3)])
    if pattern == "fine":
        period = rng.uniform(2.6, 4.5) * texel_scale / 200
    else:
        period = rng.uniform(0.015, 0.05) * texel_scale
    angle = float(rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4, rng.uniform(0, np.pi)]))
    return Garment(pattern, colours, float(max(period, 2.6)), angle, int(rng.integers(2**31)))


def shade_across(texture: np.ndarray, axis_v: float, half_width: float, depth: float = 0.3) -> np.ndarray:
    """Cylinder-like shading across texture rows (v axis): darker towards the outline."""
    rows = np.arange(texture.shape[0], dtype=np.float32)
    t = np.clip(np.abs(rows - axis_v) / max(half_width, 1e-6), 0, 1)
    shade = 1 - depth * t**2
    return (texture * shade[:, None, None]).astype(np.float32)


def studio_background(rng: np.random.Generator, size: int, horizon: float) -> np.ndarray:
    """A runway/studio backdrop (size, size, 3): wall, lights, panels, and a floor with a runway strip.

    ``horizon`` is the wall/floor boundary as a fraction of the height.
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    wall = random_colour(rng, (0.0, 0.5)) * rng.uniform(0.6, 1.1)
    wall_bottom = wall * rng.uniform(0.6, 1.0)
    image = wall + (wall_bottom - wall) * ys[..., None]
    style = rng.integers(3)
    if style == 0:  # vertical panels
        panels = _soft_square_wave(xs * rng.uniform(4, 10), rng.uniform(0.85, 0.97), 8.0)
        image = image * (1 - 0.12 * (1 - panels[..., None]))
    elif style == 1:  # curtain folds
        folds = np.sin(2 * np.pi * xs * rng.uniform(10, 22) + 2 * smooth_noise(rng, size, size, size / 4))
        image = image * (1 + 0.08 * folds[..., None])
    else:  # mottled studio paper
        image = image * (1 + 0.12 * smooth_noise(rng, size, size, size / 8)[..., None])
    for _ in range(rng.integers(1, 4)):  # spotlights
        cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.05, horizon), rng.uniform(0.08, 0.25)
        glow = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r**2))
        image = image + rng.uniform(0.1, 0.35) * glow[..., None]
    floor = random_colour(rng, (0.0, 0.3)) * rng.uniform(0.3, 0.9)
    depth = np.clip((ys - horizon) / max(1 - horizon, 1e-3), 0, 1)
    runway_half = 0.08 + 0.45 * depth
    runway = np.clip((runway_half - np.abs(xs - 0.5)) * size * 0.7, 0, 1)
    runway_colour = random_colour(rng, (0.0, 0.3)) * rng.uniform(0.6, 1.0)
    floor_image = floor + runway[..., None] * (runway_colour - floor)
    edge = np.exp(-(((np.abs(xs - 0.5) - runway_half) * size / 1.5) ** 2))
    floor_image = floor_image + 0.25 * edge[..., None]
    floor_image = floor_image * (1 + 0.06 * smooth_noise(rng, size, size, size / 16)[..., None])
    on_floor = np.clip((ys - horizon) * size * 0.8, 0, 1)[..., None]
    image = image + on_floor * (floor_image - image)
    return np.clip(image, 0, 1).astype(np.float32)
