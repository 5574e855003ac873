"""Frame and temporal metrics for evaluation (Sec 4.1 protocol, adapted to what can run offline).

All functions take float images in [0, 1] shaped (T, 3, H, W) or (3, H, W) and return Python floats.
- reconstruction: L1, PSNR (capped at ``PSNR_CAP`` dB for identical frames), MS-SSIM (pytorch-msssim);
- temporal: the warping error E_warp of the video-consistency literature on ground-truth-visible pixels,
  and an Interp-PSNR stand-in: frame t interpolated from t-1 and t+1 with a classical optical flow (OpenCV
  DIS), PSNR against frame t. The paper used a learned interpolator [13]; ours is classical, so values are
  comparable only between rows of the same table.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim

from internet.geometry import flow_pixels_to_grid, warp

PSNR_CAP = 100.0
FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (uint8 HxWx3 a, b) -> (H,W,2) backward flow a(x)≈b(x+f)


def l1(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute error."""
    return float((pred - target).abs().mean())


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for signals in [0, 1], capped at ``PSNR_CAP``."""
    mse = float(((pred - target) ** 2).mean())
    return PSNR_CAP if mse <= 10 ** (-PSNR_CAP / 10) else min(PSNR_CAP, -10.0 * math.log10(mse))


def ms_ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Multi-scale SSIM (pytorch-msssim, 5 scales); the Gaussian window shrinks for frames under 161 px."""
    pred, target = _batch(pred), _batch(target)
    side = min(pred.shape[-2:])
    win = 11
    while win > 3 and (win - 1) * 16 >= side:  # pytorch-msssim needs side > (win - 1) * 2**4
        win -= 2
    if (win - 1) * 16 >= side:
        raise ValueError(f"MS-SSIM needs frames of at least 33 px, got {side}")
    value = _ms_ssim(pred.float(), target.float(), data_range=1.0, size_average=True, win_size=win)
    return float(value)


def warp_error(frames: torch.Tensor, flows: torch.Tensor, visible: torch.Tensor) -> list[float]:
    """E_warp per frame pair: mean over visible pixels of ||O_t - warp(O_{t-1}, f_t)||^2 (summed over RGB).

    frames (T, 3, H, W); flows (T-1, H, W, 2) backward flow in pixels (frame_t(x) ≈ frame_{t-1}(x + f));
    visible (T-1, H, W) bool. Returns T-1 values (0 for identical, perfectly warped videos).
    """
    prev, cur = frames[:-1].float(), frames[1:].float()
    warped = warp(prev, flow_pixels_to_grid(flows.float()), padding_mode="border")
    err = ((cur - warped) ** 2).sum(1)  # (T-1, H, W)
    mask = visible.float()
    return [float((e * m).sum() / m.sum().clamp_min(1.0)) for e, m in zip(err, mask)]


def interp_psnr(frames: torch.Tensor, flow_fn: FlowFn) -> list[float]:
    """Interp-PSNR: PSNR of frame t against its interpolation from t-1 and t+1 (T-2 values).

    With backward flows f_a (t-1 -> t+1) and f_b (t+1 -> t-1), frame t is approximated as the mean of
    frame_{t+1} sampled at x + f_a/2 and frame_{t-1} sampled at x + f_b/2 (linear motion assumed).
    """
    out = []
    u8 = [_to_uint8(f) for f in frames]
    for t in range(1, len(frames) - 1):
        fa = torch.from_numpy(flow_fn(u8[t - 1], u8[t + 1])).float()[None] * 0.5
        fb = torch.from_numpy(flow_fn(u8[t + 1], u8[t - 1])).float()[None] * 0.5
        a = warp(frames[t + 1][None].float(), flow_pixels_to_grid(fa), padding_mode="border")
        b = warp(frames[t - 1][None].float(), flow_pixels_to_grid(fb), padding_mode="border")
        out.append(psnr(0.5 * (a + b), frames[t][None].float()))
    return out


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (normal approximation; 0 for one value)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    if arr.size == 1:
        return float(arr[0]), 0.0
    return float(arr.mean()), float(1.96 * arr.std(ddof=1) / math.sqrt(arr.size))


def _batch(x: torch.Tensor) -> torch.Tensor:
    return x[None] if x.dim() == 3 else x


def _to_uint8(frame: torch.Tensor) -> np.ndarray:
    return (frame.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
