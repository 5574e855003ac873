"""The camera score: SynthRunway's exact background map, and how far a background term T_0 is from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from internet.config import load_config
from internet.geometry import flow_pixels_to_grid, warp
from internet.model import INTERNet
from training.camera import background_maps, camera_score, to_normalized
from training.data import load_clip
from training.synthrunway import ClipSpec, generate_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return generate_clip(ClipSpec(seed=10_901, index=0, frames=10, size=64), tmp_path_factory.mktemp("clip"))


def test_the_exact_background_map_agrees_with_the_clips_flow_far_from_the_person(clip):
    """Frame 1 -> frame 0 is the clip's first backward flow: on background pixels the affine map must give it."""
    maps = background_maps(clip, 2)
    assert np.allclose(maps[0], [[1, 0, 0], [0, 1, 0]])
    data = load_clip(clip)
    flow, visible, person = np.asarray(data.flow[0]), np.asarray(data.visible[0]), np.asarray(data.mask[1])
    ys, xs = np.mgrid[0:64, 0:64].astype(np.float64)
    mapped = np.stack([maps[1][0, 0] * xs + maps[1][0, 1] * ys + maps[1][0, 2],
                       maps[1][1, 0] * xs + maps[1][1, 1] * ys + maps[1][1, 2]], -1)  # fmt: skip
    background = visible & ~person
    assert background.mean() > 0.5
    assert np.abs(mapped - np.stack([xs, ys], -1) - flow)[background].max() < 0.05


def test_normalised_maps_move_an_image_as_the_pixel_maps_do():
    pixel = np.array([[1.02, 0.01, -1.5], [0.0, 0.98, 2.0]])
    image = torch.rand(1, 3, 17, 17)
    ys, xs = np.mgrid[0:17, 0:17].astype(np.float32)
    offsets = np.stack([pixel[0, 0] * xs + pixel[0, 1] * ys + pixel[0, 2] - xs,
                        pixel[1, 0] * xs + pixel[1, 1] * ys + pixel[1, 2] - ys], -1)  # fmt: skip
    by_pixels = warp(image, flow_pixels_to_grid(torch.from_numpy(offsets)[None]))
    theta = to_normalized(pixel, 17)[None]
    by_theta = torch.nn.functional.grid_sample(
        image, torch.nn.functional.affine_grid(theta, (1, 3, 17, 17), align_corners=True), align_corners=True
    )
    assert torch.allclose(by_pixels, by_theta, atol=1e-5)


class ExactBackground(nn.Module):
    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.maps = maps

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        return self.maps[: driving.shape[0]]


def test_the_identity_scores_the_camera_motion_and_the_exact_map_scores_zero(clip):
    torch.manual_seed(0)
    plain = INTERNet(load_config("tiny")).eval()
    score = camera_score(plain, clip, frames=10)
    assert score.background_error_px == pytest.approx(score.identity_error_px) and score.identity_error_px > 0
    model = INTERNet(load_config("tiny", ["motion.background=affine"])).eval()
    model.background = ExactBackground(to_normalized(background_maps(clip, 10), 64))
    exact = camera_score(model, clip, frames=10)
    assert exact.background_error_px < 1e-3 and exact.identity_error_px == pytest.approx(score.identity_error_px)
