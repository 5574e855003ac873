"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.metrics import PSNR_CAP, interp_psnr, l1, mean_ci95, ms_ssim, psnr, warp_error


def video(t: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(t, 3, size, size, generator=g)


def test_identical_videos_have_zero_error_capped_psnr_and_unit_ms_ssim():
    v = video()
    assert l1(v, v) == 0.0
    assert psnr(v, v) == PSNR_CAP
    assert ms_ssim(v, v) == pytest.approx(1.0, abs=1e-5)


def test_psnr_of_a_known_constant_offset():
    a = torch.zeros(1, 3, 8, 8)
    b = a + 0.1  # mse 0.01 -> 20 dB
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-4)
    assert l1(a, b) == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_ms_ssim_orders_noise_levels(size):
    v = video(1, size)
    small = (v + 0.02 * torch.randn_like(v)).clamp(0, 1)
    large = (v + 0.2 * torch.randn_like(v)).clamp(0, 1)
    assert 1.0 > ms_ssim(small, v) > ms_ssim(large, v)


def shifted_video(t: int, size: int, dx: int) -> torch.Tensor:
    base = video(1, size + t * abs(dx) + 2, seed=3)[0]
    return torch.stack([base[:, :size, i * dx + 1 : i * dx + 1 + size] for i in range(t)])


def test_warp_error_zero_for_a_video_warped_by_its_exact_flow():
    dx = 2
    v = shifted_video(4, 32, dx)  # frame_t(x) = frame_{t-1}(x + dx)
    flow = torch.zeros(3, 32, 32, 2)
    flow[..., 0] = dx
    visible = torch.ones(3, 32, 32, dtype=torch.bool)
    visible[..., -dx:] = False  # pixels that come from outside frame t-1
    assert max(warp_error(v, flow, visible)) < 1e-10


def test_warp_error_of_a_static_video_is_nonzero_only_where_flow_moves():
    v = shifted_video(3, 32, 2)
    static = v[:1].expand(3, -1, -1, -1)
    zero = torch.zeros(2, 32, 32, 2)
    visible = torch.ones(2, 32, 32, dtype=torch.bool)
    assert max(warp_error(static, zero, visible)) < 1e-10
    moving = zero.clone()
    moving[..., 0] = 2
    visible[..., -2:] = False
    assert min(warp_error(static, moving, visible)) > 0.01
    # Known value: a frame vs itself shifted; error = mean squared difference of the two, summed over RGB.
    f = static[0]
    expected = float(((f[:, :, :-2] - f[:, :, 2:]) ** 2).sum(0).mean())
    assert warp_error(static, moving, visible)[0] == pytest.approx(expected, rel=1e-5)


def exact_shift_flow(dx: int):
    def fn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        f = np.zeros(a.shape[:2] + (2,), np.float32)
        # a(x) ≈ b(x + f): frame_{t-1}(x) = frame_{t+1}(x - 2dx), and the reverse for the second call.
        f[..., 0] = -2 * dx if fn.forward else 2 * dx
        fn.forward = not fn.forward
        return f

    fn.forward = True
    return fn


def test_interp_psnr_high_for_linear_motion_with_exact_flow_and_low_for_flicker():
    xs = torch.arange(60.0)
    base = 0.5 + 0.4 * torch.sin(xs / 4)[None, None, :] * torch.cos(xs / 6)[None, :, None]
    v = torch.stack([base[:, :48, 2 * i : 2 * i + 48].expand(3, -1, -1) for i in range(3)])
    good = interp_psnr(v, exact_shift_flow(2))[0]
    flicker = v.clone()
    flicker[1] = 1 - flicker[1]
    bad = interp_psnr(flicker, exact_shift_flow(2))[0]
    assert good > 30 and bad < 12


def test_mean_ci95():
    m, h = mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5
    assert h == pytest.approx(1.96 * np.std([1, 2, 3, 4], ddof=1) / 2)
    assert mean_ci95([5.0]) == (5.0, 0.0)
    assert all(math.isnan(x) for x in mean_ci95([]))
