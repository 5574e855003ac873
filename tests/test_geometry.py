"""Geometry checks with independent references (identity transforms, known translations, TPS)."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from internet.geometry import (
    Anchors,
    ThinPlateSpline,
    affine_grid,
    compose_flow,
    flow_pixels_to_grid,
    identity_grid,
    invert_2x2,
    local_affine_grids,
    normalized_to_pixels,
    pixels_to_normalized,
    relative_anchors,
    resize_grid,
    warp,
)


def random_anchors(b: int, k: int, seed: int = 0) -> Anchors:
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(b, k, 2, generator=g) * 1.6 - 0.8
    jac = torch.eye(2).repeat(b, k, 1, 1) + 0.2 * torch.randn(b, k, 2, 2, generator=g)
    return Anchors(points, jac)


def test_identity_grid_corners_and_spacing():
    grid = identity_grid(5, 9)
    assert grid.shape == (5, 9, 2)
    assert torch.allclose(grid[0, 0], torch.tensor([-1.0, -1.0]))
    assert torch.allclose(grid[-1, -1], torch.tensor([1.0, 1.0]))
    assert torch.allclose(grid[2, 4], torch.tensor([0.0, 0.0]))
    assert torch.allclose(grid[0, 1, 0] - grid[0, 0, 0], torch.tensor(2 / 8))


def test_identity_warp_is_exact():
    img = torch.rand(2, 3, 17, 23)
    grid = identity_grid(17, 23)[None].expand(2, -1, -1, -1)
    assert torch.allclose(warp(img, grid), img, atol=1e-6)


def test_warp_by_known_translation_moves_pattern_exactly():
    img = torch.zeros(1, 1, 32, 32)
    img[0, 0, 10:14, 5:9] = 1.0  # a square at rows 10-13, cols 5-8
    dx, dy = 3, -2  # read from (x + 3, y - 2): content moves left 3 and down 2
    flow = torch.zeros(1, 32, 32, 2)
    flow[..., 0], flow[..., 1] = dx, dy
    out = warp(img, flow_pixels_to_grid(flow))
    expected = torch.zeros_like(img)
    expected[0, 0, 12:16, 2:6] = 1.0
    assert torch.allclose(out, expected, atol=1e-5)


def test_pixel_normalized_round_trip():
    pts = torch.tensor([[0.0, 0.0], [63.0, 31.0], [10.5, 7.25]])
    norm = pixels_to_normalized(pts, 32, 64)
    assert torch.allclose(norm[0], torch.tensor([-1.0, -1.0]))
    assert torch.allclose(norm[1], torch.tensor([1.0, 1.0]))
    assert torch.allclose(normalized_to_pixels(norm, 32, 64), pts, atol=1e-5)


def test_identical_anchors_with_identity_jacobians_give_identity_flow():
    a = random_anchors(2, 10)
    a = Anchors(a.points, torch.eye(2).repeat(2, 10, 1, 1))
    transforms = local_affine_grids(a, a, 16, 16)
    weights = torch.softmax(torch.randn(2, 11, 16, 16), dim=1)
    flow = compose_flow(weights, transforms)
    assert torch.allclose(flow, identity_grid(16, 16).expand(2, -1, -1, -1), atol=1e-6)


def test_local_transform_maps_driving_anchor_to_source_anchor():
    src, drv = random_anchors(1, 4, 1), random_anchors(1, 4, 2)
    # Evaluate T_i exactly at K^d_i: build a 1-pixel "grid" by sampling the dense transform field.
    t = local_affine_grids(src, drv, 65, 65)  # (1, 5, H, W, 2)
    for i in range(4):
        px = normalized_to_pixels(drv.points[0, i], 65, 65)
        field = t[0, i + 1].permute(2, 0, 1)[None]
        grid = drv.points[0, i].view(1, 1, 1, 2)
        value = torch.nn.functional.grid_sample(field, grid, align_corners=True).view(2)
        assert torch.allclose(value, src.points[0, i], atol=1e-4), (i, px)


def test_resize_grid_keeps_affine_grids_exact():
    theta = torch.tensor([[0.9, 0.1, 0.05], [-0.2, 1.1, -0.1]])
    g = identity_grid(16, 16).reshape(-1, 2) @ theta[:, :2].T + theta[:, 2]
    up = resize_grid(g.view(1, 16, 16, 2), 64, 64)
    ref = identity_grid(64, 64).reshape(-1, 2) @ theta[:, :2].T + theta[:, 2]
    assert torch.allclose(up.view(-1, 2), ref, atol=1e-5)


def test_invert_2x2_matches_torch_inverse():
    m = torch.randn(50, 2, 2) + 3 * torch.eye(2)
    assert torch.allclose(invert_2x2(m), torch.linalg.inv(m), atol=1e-4)


def test_relative_anchors_reference_equals_driving_returns_source():
    src, ref = random_anchors(1, 10, 3), random_anchors(1, 10, 4)
    out = relative_anchors(src, ref, ref, adapt_scale=True)
    assert torch.allclose(out.points, src.points, atol=1e-6)
    assert torch.allclose(out.jacobians, src.jacobians, atol=1e-4)


def test_tps_with_zero_coefficients_is_identity():
    tps = ThinPlateSpline(3, sigma_affine=0.0, sigma_tps=0.0)
    pts = torch.rand(3, 20, 2) * 2 - 1
    assert torch.allclose(tps.warp_coordinates(pts), pts, atol=1e-6)
    jac = tps.jacobian(pts)
    assert torch.allclose(jac, torch.eye(2).expand(3, 20, 2, 2), atol=1e-5)
    img = torch.rand(3, 3, 24, 24)
    assert torch.allclose(tps.warp_image(img), img, atol=1e-5)


def test_tps_jacobian_matches_finite_differences():
    tps = ThinPlateSpline(1, sigma_affine=0.1, sigma_tps=0.05, generator=torch.Generator().manual_seed(0))
    p = torch.tensor([[[0.3, -0.2]]], dtype=torch.float64)
    tps.theta, tps.coeffs, tps.control = tps.theta.double(), tps.coeffs.double(), tps.control.double()
    jac = tps.jacobian(p)[0, 0]
    eps = 1e-6
    num = torch.zeros(2, 2, dtype=torch.float64)
    for j in range(2):
        d = torch.zeros_like(p)
        d[..., j] = eps
        num[:, j] = ((tps.warp_coordinates(p + d) - tps.warp_coordinates(p - d)) / (2 * eps))[0, 0]
    assert torch.allclose(jac, num, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    angle=st.floats(-math.pi, math.pi),
    scale=st.floats(0.3, 3.0),
    tx=st.floats(-0.5, 0.5),
    ty=st.floats(-0.5, 0.5),
)
def test_single_anchor_transform_is_the_affine_map(angle, scale, tx, ty):
    """With one anchor and weight 1 on it, F(z) = K^s + J_s J_d^-1 (z - K^d) for any rotation/scale."""
    c, s = math.cos(angle), math.sin(angle)
    jd = torch.tensor([[c, -s], [s, c]]) * scale
    drv = Anchors(torch.tensor([[[tx, ty]]]), jd.view(1, 1, 2, 2))
    src = Anchors(torch.tensor([[[0.1, -0.1]]]), torch.eye(2).view(1, 1, 2, 2))
    t = local_affine_grids(src, drv, 9, 9)
    weights = torch.zeros(1, 2, 9, 9)
    weights[:, 1] = 1
    flow = compose_flow(weights, t)[0]
    z = identity_grid(9, 9)
    ref = (z - torch.tensor([tx, ty])) @ torch.linalg.inv(jd).T + torch.tensor([0.1, -0.1])
    assert torch.allclose(flow, ref, atol=1e-4)


def test_affine_grid_of_the_identity_is_the_identity_grid_and_a_shift_moves_every_point():
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[1.0, 0.0, 0.25], [0.0, 1.0, -0.5]]])
    grid = affine_grid(theta, 7, 5)
    assert torch.allclose(grid[0], identity_grid(7, 5))
    assert torch.allclose(grid[1] - identity_grid(7, 5), torch.tensor([0.25, -0.5]).expand(7, 5, 2))
    # A zoom about the centre scales the coordinates; the same map warps an image like grid_sample's own.
    zoom = torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]])
    image = torch.rand(1, 3, 9, 9)
    ours = warp(image, affine_grid(zoom, 9, 9))
    reference = torch.nn.functional.grid_sample(
        image, torch.nn.functional.affine_grid(zoom, (1, 3, 9, 9), align_corners=True), align_corners=True
    )
    assert torch.allclose(ours, reference, atol=1e-6)


def test_the_background_term_is_the_given_affine_map_and_the_anchor_terms_do_not_change():
    src, drv = random_anchors(2, 3, 1), random_anchors(2, 3, 2)
    theta = torch.tensor([[1.02, 0.0, 0.03], [0.0, 1.02, -0.01]]).expand(2, 2, 3)
    plain = local_affine_grids(src, drv, 8, 8)
    moved = local_affine_grids(src, drv, 8, 8, background=theta)
    assert torch.allclose(plain[:, 0], identity_grid(8, 8).expand(2, -1, -1, -1))
    assert torch.allclose(moved[:, 0], affine_grid(theta, 8, 8))
    assert not torch.allclose(moved[:, 0], plain[:, 0])
    assert torch.equal(moved[:, 1:], plain[:, 1:])
