"""Spatter: water drops (severities with mud flag 0) or mud splashes (flag 1).

The water branch of the reference is a chain of OpenCV calls on a blurred noise layer:
Canny edges -> distance to the nearest edge (capped at 20) -> 3x3 box blur ->
histogram equalisation -> emboss filter -> box blur, used as the drop intensity. Each
step is re-done here batched in torch with OpenCV's conventions (8-bit saturation,
REFLECT_101 borders); the one knowing deviation is the distance transform, which is the
exact Euclidean distance instead of OpenCV's 5x5 chamfer approximation of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .corruption_ops import filter2d, gaussian_blur, pad2d

_WATER = (175 / 255, 238 / 255, 238 / 255)   # pale turquoise
_MUD = (63 / 255, 42 / 255, 20 / 255)        # mud brown
_EMBOSS = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))
_TAN22 = 0.4142135623730950


def _canny(img: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """cv2.Canny(img, low, high) with the L1 gradient: (B, 1, H, W) float 0..255 -> bool."""
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=img.device)
    p = pad2d(img, 1, 1, 1, 1, "replicate")
    gx = F.conv2d(p, sobel.view(1, 1, 3, 3))
    gy = F.conv2d(p, sobel.t().reshape(1, 1, 3, 3))
    mag = gx.abs() + gy.abs()
    m = F.pad(mag, (1, 1, 1, 1))            # OpenCV's magnitude rows outside are zero
    H, W = img.shape[-2:]

    def at(dy, dx):
        return m[..., 1 + dy:1 + dy + H, 1 + dx:1 + dx + W]

    ax, ay = gx.abs(), gy.abs()
    horiz = ay < ax * _TAN22
    vert = ay > ax * (_TAN22 + 2)
    sgn = torch.where((gx < 0) != (gy < 0), -1, 1)
    peak_h = (mag > at(0, -1)) & (mag >= at(0, 1))
    peak_v = (mag > at(-1, 0)) & (mag >= at(1, 0))
    peak_d = torch.where(sgn < 0, (mag > at(-1, 1)) & (mag > at(1, -1)),
                         (mag > at(-1, -1)) & (mag > at(1, 1)))
    peak = torch.where(horiz, peak_h, torch.where(vert, peak_v, peak_d))
    weak = peak & (mag > low)
    edges = weak & (mag > high)
    # hysteresis: grow the strong edges through 8-connected weak pixels
    while True:
        grown = weak & (F.max_pool2d(edges.float(), 3, 1, 1) > 0)
        if bool((grown == edges).all()):
            return edges
        edges = grown


def _distance_to(edges: torch.Tensor, cap: int) -> torch.Tensor:
    """Euclidean distance to the nearest True pixel, capped at `cap` (exact within the cap)."""
    W = edges.shape[-1]
    pos = torch.arange(W, device=edges.device, dtype=torch.float32)
    far = float(cap + 1)
    left = torch.where(edges, pos, -1e6).cummax(-1).values
    right = torch.where(edges, pos, 1e6).flip(-1).cummin(-1).values.flip(-1)
    row = torch.minimum(pos - left, right - pos).clamp_(max=far) ** 2
    best = row.clone()
    for j in range(1, cap + 1):
        best[..., j:, :] = torch.minimum(best[..., j:, :], row[..., :-j, :] + j * j)
        best[..., :-j, :] = torch.minimum(best[..., :-j, :], row[..., j:, :] + j * j)
    return best.sqrt_().clamp_(max=cap)


def _equalize(img: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist per sample on integer-valued floats 0..255."""
    B = img.shape[0]
    flat = img.reshape(B, -1).long()
    hist = torch.zeros(B, 256, device=img.device).scatter_add_(1, flat, torch.ones_like(
        flat, dtype=torch.float32))
    total = hist.sum(1, keepdim=True)
    first = (hist > 0).float().argmax(1, keepdim=True)
    h0 = hist.gather(1, first)
    scale = 255.0 / (total - h0).clamp_min(1)
    lut = ((hist.cumsum(1) - h0) * scale).round_().clamp_(0, 255)
    lut = torch.where(total == h0, first.float(), lut)
    return lut.gather(1, flat).view_as(img)


def _box3(x: torch.Tensor) -> torch.Tensor:
    return filter2d(x, torch.full((3, 3), 1 / 9), "reflect101")


def _water(x, liquid, intensity):
    liquid = (liquid * 255).floor_().clamp_(0, 255)                 # .astype(np.uint8)
    dist = torch.where(_canny(liquid, 50, 150), 0.0, 1.0)
    dist = _distance_to(dist == 0, 20)
    dist = _box3(dist).floor_()                                     # blur, .astype(uint8)
    dist = _equalize(dist)
    dist = filter2d(dist, torch.tensor(_EMBOSS), "reflect101").round_().clamp_(0, 255)
    dist = _box3(dist).round_()                                     # 8-bit blur
    m = liquid * dist
    peak = m.amax((2, 3), keepdim=True)
    m = torch.where(peak > 0, m / peak.clamp_min(1e-12), 0.0) * intensity
    return x + m * torch.tensor(_WATER, device=x.device).view(1, 3, 1, 1)


def spatter(x, c, call):
    mean, std, sigma, thresh, fifth, mud = c
    liquid = call.rng.normal((1, *x.shape[-2:]), mean, std)
    liquid = gaussian_blur(liquid, sigma * call.scale, "replicate")
    liquid = torch.where(liquid < thresh, 0.0, liquid)
    if not mud:
        return _water(x, liquid, fifth)
    m = gaussian_blur((liquid > thresh).float(), fifth * call.scale, "replicate")
    m = torch.where(m < 0.8, 0.0, m)
    return x * (1 - m) + torch.tensor(_MUD, device=x.device).view(1, 3, 1, 1) * m
