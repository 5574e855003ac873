"""Geometry in one place: coordinate grids, warps, anchor transforms and thin-plate splines.

Conventions used everywhere in the project:
- coordinates are normalised to [-1, 1], x then y, with ``align_corners=True``: -1 is the centre of the
  first pixel and +1 the centre of the last, so a grid upsampled with bilinear ``align_corners=True``
  interpolation stays exact (the flow pyramid relies on it);
- a *flow* is a sampling grid (B, H, W, 2): for each output pixel, the source coordinate to read from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Anchors:
    """Motion anchors K_i with their local Jacobians (Sec 3.3, Eq 5)."""

    points: torch.Tensor  # (B, K, 2) in [-1, 1], x then y
    jacobians: torch.Tensor  # (B, K, 2, 2)
    heatmaps: torch.Tensor | None = None  # (B, K, h, w) soft-argmax heatmaps, when detected

    def detach(self) -> Anchors:
        hm = None if self.heatmaps is None else self.heatmaps.detach()
        return Anchors(self.points.detach(), self.jacobians.detach(), hm)


def identity_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 2) grid of normalised x, y coordinates (align_corners=True)."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def pixels_to_normalized(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates (x, y) -> [-1, 1] with align_corners=True."""
    scale = points.new_tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)])
    return points * scale - 1.0


def normalized_to_pixels(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[-1, 1] coordinates -> pixel coordinates (x, y), align_corners=True."""
    scale = points.new_tensor([(width - 1) / 2.0, (height - 1) / 2.0])
    return (points + 1.0) * scale


def flow_pixels_to_grid(flow: torch.Tensor) -> torch.Tensor:
    """Backward flow in pixels (B, H, W, 2) -> sampling grid (B, H, W, 2) reading ``x + flow(x)``."""
    _, h, w, _ = flow.shape
    base = identity_grid(h, w, device=flow.device, dtype=flow.dtype)
    scale = flow.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    return base + flow * scale


def warp(image: torch.Tensor, grid: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Backward warp: ``out(x) = image(grid(x))`` with bilinear sampling (the F^i(phi) of Eq 6).

    The grid is resized to ``image``'s spatial size first when they differ (bilinear, align_corners=True).
    """
    if grid.shape[1:3] != image.shape[2:]:
        grid = resize_grid(grid, image.shape[2], image.shape[3])
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=True)


def resize_grid(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinearly resample a sampling grid (B, h, w, 2) to (B, H, W, 2); exact for affine grids."""
    g = F.interpolate(grid.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=True)
    return g.permute(0, 2, 3, 1)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x bilinear upsampling of a map (B, C, H, W), align_corners=True (pyramids of Sec 3.3)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


def gaussian_heatmaps(points: torch.Tensor, height: int, width: int, variance: float) -> torch.Tensor:
    """Isotropic Gaussians centred on ``points`` (B, K, 2) -> (B, K, H, W)."""
    grid = identity_grid(height, width, device=points.device, dtype=points.dtype)
    diff = grid[None, None] - points[:, :, None, None, :]
    return torch.exp(-0.5 * (diff**2).sum(-1) / variance)


def invert_2x2(m: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Closed-form inverse of (..., 2, 2) matrices with the determinant kept away from zero."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    sign = torch.where(det < 0, -torch.ones_like(det), torch.ones_like(det))
    det = torch.where(det.abs() < eps, sign * eps, det)
    inv = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    return inv / det[..., None, None]


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A global affine map z -> A z + t of normalised coordinates on the grid: theta (B, 2, 3) -> (B, H, W, 2)."""
    grid = identity_grid(height, width, device=theta.device, dtype=theta.dtype)
    return torch.einsum("bij,hwj->bhwi", theta[:, :, :2], grid) + theta[:, None, None, :, 2]


def local_affine_grids(
    source: Anchors, driving: Anchors, height: int, width: int, background: torch.Tensor | None = None
) -> torch.Tensor:
    """The local transforms T_i of Eq 5, evaluated on the driving grid: (B, K+1, H, W, 2).

    T_i(z) = K^s_i + J_s J_d^{-1} (z - K^d_i) maps a driving coordinate to the source through the
    anchor's canonical frame, so that T_i(K^d_i) = K^s_i. Index 0 is the background term: the identity
    (the paper's, as FOMM's), or the global affine ``background`` (B, 2, 3) when one is given (TPSMM's camera term).
    """
    grid = identity_grid(height, width, device=source.points.device, dtype=source.points.dtype)
    b, k, _ = source.points.shape
    jac = source.jacobians @ invert_2x2(driving.jacobians)  # (B, K, 2, 2)
    rel = grid[None, None] - driving.points[:, :, None, None, :]  # (B, K, H, W, 2)
    moved = torch.einsum("bkij,bkhwj->bkhwi", jac, rel) + source.points[:, :, None, None, :]
    if background is None:
        first = grid[None, None].expand(b, 1, height, width, 2)
    else:
        first = affine_grid(background.to(grid.dtype), height, width)[:, None]
    return torch.cat([first, moved], dim=1)


def compose_flow(weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """F = sum_i omega_i T_i (Eq 5): weights (B, K+1, H, W), transforms (B, K+1, H, W, 2) -> (B, H, W, 2)."""
    return (weights.unsqueeze(-1) * transforms).sum(dim=1)


def relative_anchors(source: Anchors, driving: Anchors, reference: Anchors, adapt_scale: bool = True) -> Anchors:
    """FOMM-style relative motion: move the source anchors by the driving displacement from ``reference``.

    With ``adapt_scale`` the displacement is scaled by sqrt(area(source hull) / area(reference hull)),
    approximated by the anchors' covariance determinant (robust for any K >= 3).
    """
    scale = 1.0
    if adapt_scale:
        scale = (_spread(source.points) / _spread(reference.points).clamp_min(1e-6)).sqrt()[:, None, None]
    points = source.points + (driving.points - reference.points) * scale
    jacobians = driving.jacobians @ invert_2x2(reference.jacobians) @ source.jacobians
    return Anchors(points, jacobians)


def _spread(points: torch.Tensor) -> torch.Tensor:
    """sqrt(det(cov)) of a point set (B, K, 2): an area-like scale measure."""
    centred = points - points.mean(dim=1, keepdim=True)
    cov = centred.transpose(1, 2) @ centred / points.shape[1]
    return (cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] * cov[:, 1, 0]).clamp_min(0).sqrt()


class ThinPlateSpline:
    """Random affine + thin-plate-spline warp T used by the equivariance loss (Eq 10-11).

    T(p) = A p + b + sum_j w_j U(|p - c_j|),  U(r) = r^2 log r, on normalised coordinates.
    With all coefficients zero (``sigma_affine = sigma_tps = 0``) T is exactly the identity.
    """

    def __init__(
        self,
        batch: int,
        *,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        generator: torch.Generator | None = None,
        device=None,
    ) -> None:
        noise = torch.randn(batch, 2, 3, generator=generator) * sigma_affine
        self.theta = (noise + torch.eye(2, 3)).to(device)
        self.control = identity_grid(points_tps, points_tps).reshape(1, -1, 2).to(device)
        self.coeffs = (torch.randn(batch, points_tps**2, 2, generator=generator) * sigma_tps).to(device)

    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """Apply T to points (B, N, 2) -> (B, N, 2)."""
        theta = self.theta.to(coords.dtype)
        out = coords @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]
        dist = (coords[:, :, None, :] - self.control.to(coords.dtype)[:, None]).norm(dim=-1)  # (B, N, P)
        radial = dist**2 * torch.log(dist + 1e-9)
        return out + radial @ self.coeffs.to(coords.dtype)

    def jacobian(self, coords: torch.Tensor) -> torch.Tensor:
        """dT/dp at points (B, N, 2) -> (B, N, 2, 2), by autograd (differentiable w.r.t. ``coords``)."""
        with torch.enable_grad():
            c = coords if coords.requires_grad else coords.detach().requires_grad_(True)
            warped = self.warp_coordinates(c)
            gx = torch.autograd.grad(warped[..., 0].sum(), c, create_graph=True)[0]
            gy = torch.autograd.grad(warped[..., 1].sum(), c, create_graph=True)[0]
        return torch.stack([gx, gy], dim=-2)

    def warp_image(self, image: torch.Tensor) -> torch.Tensor:
        """Resample ``image`` at T(grid): the transformed frame whose anchors should move by T^-1."""
        b, _, h, w = image.shape
        grid = identity_grid(h, w, device=image.device, dtype=image.dtype).reshape(1, -1, 2).expand(b, -1, -1)
        sampled = self.warp_coordinates(grid).reshape(b, h, w, 2)
        return F.grid_sample(image, sampled, mode="bilinear", padding_mode="reflection", align_corners=True)
