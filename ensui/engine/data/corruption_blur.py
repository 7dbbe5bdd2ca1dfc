"""Blur and geometric corruptions: defocus, glass, motion, zoom, gaussian blur, elastic, pixelate.

Same op signature as `corruption_noise`. Pixel lengths are multiplied by `call.scale`
(image side / the table's reference side).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .corruption_ops import clipped_zoom, filter2d, gaussian_blur as _blur, motion_filter


@lru_cache(maxsize=32)
def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's anti-aliased disk: a binary disk smoothed by cv2.GaussianBlur."""
    r = math.ceil(radius) if radius > 8 else 8
    ksize = 3 if radius <= 8 else 5
    t = np.arange(-r, r + 1)
    X, Y = np.meshgrid(t, t)
    disk = (X**2 + Y**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-((np.arange(ksize) - (ksize - 1) / 2) ** 2) / (2 * alias_blur**2))
    g /= g.sum()
    p = ksize // 2
    padded = np.pad(disk, p, mode="reflect")   # numpy 'reflect' = cv2 REFLECT_101
    rows = sum(g[i] * padded[i:i + disk.shape[0]] for i in range(ksize))
    k = sum(g[j] * rows[:, j:j + disk.shape[1]] for j in range(ksize))
    # drop the rows/columns that are zero to float precision: direct conv stays cheap
    keep = np.abs(k).max(0) > 1e-9 * k.max()
    n = int(np.argmax(keep))
    return k[n:k.shape[0] - n, n:k.shape[1] - n].astype(np.float32)


def defocus_blur(x, c, call):
    radius, alias = c
    k = torch.from_numpy(_disk(radius * call.scale, alias * call.scale))
    return filter2d(x, k, "reflect101")


def gaussian_blur(x, c, call):
    return _blur(x, c * call.scale, "replicate")


@lru_cache(maxsize=16)
def _glass_grid(H: int, W: int, d: int, device: torch.device):
    """Pixel indices, the mask of pixels the reference visits, and the flat offset of
    each of the 4 d^2 equally likely (dy, dx) in [-d, d)^2 (one draw encodes both)."""
    pos = torch.arange(H * W, device=device, dtype=torch.int32)
    h, w = pos // W, pos % W
    inside = (h >= d + 1) & (h <= H - d) & (w >= d + 1) & (w <= W - d)
    r = torch.arange(4 * d * d, device=device, dtype=torch.int32)
    shift = (r // (2 * d) - d) * W + (r % (2 * d) - d)
    return pos, inside, shift


def _glass_shuffle(x: torch.Tensor, d: int, draws: torch.Tensor) -> torch.Tensor:
    """One pass of the reference's local pixel "swap", which is really a copy.

    The reference walks (h, w) from the bottom-right to the top-left and runs
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]` on array views, which copies x[h', w']
    into x[h, w] and leaves x[h', w'] alone. So the final x[p] is the original value at
    q = p + offset, unless q was already rewritten (q later in raster order): then it is
    the final x[q]. Those chains are resolved by pointer jumping: two dense steps, then
    only the few pointers still unresolved are carried on.
    """
    B, C, H, W = x.shape
    n = H * W
    pos, inside, table = _glass_grid(H, W, d, x.device)
    # int32 indices throughout: index_select takes them and they halve the traffic
    shift = table.index_select(0, draws.reshape(-1)).view(B, n) * inside
    ptr = (pos + shift).view(-1)
    follow = (shift.view(-1) > 0) & inside.index_select(0, ptr)
    base = torch.arange(0, B * n, n, device=x.device, dtype=torch.int32)[:, None]
    ptr = (ptr.view(B, n) + base).view(-1)                          # global pixel index
    for _ in range(2 if d > 1 else 0):      # (with d = 1 no offset points forward)
        ptr, follow = (torch.where(follow, ptr.index_select(0, ptr), ptr),
                       follow & follow.index_select(0, ptr))
    todo = follow.nonzero().squeeze(1)
    while todo.numel():
        nxt = ptr[todo]
        ptr[todo], more = ptr.index_select(0, nxt), follow.index_select(0, nxt)
        follow[todo] = more
        todo = todo[more]
    local = (ptr.view(B, n) - base).long()[:, None].expand(B, C, n)
    return x.reshape(B, C, n).gather(2, local).view(B, C, H, W)


def glass_blur(x, c, call):
    sigma, delta, iterations = c
    sigma, d = sigma * call.scale, max(1, round(delta * call.scale))
    x = _blur(x, sigma, "replicate")
    H, W = x.shape[-2:]
    for _ in range(iterations):
        x = _glass_shuffle(x, d, call.rng.integers(0, 4 * d * d, (H, W)))
    return _blur(x, sigma, "replicate")


def motion_blur(x, c, call):
    radius, sigma = c
    angles = call.rng.uniform((), -45.0, 45.0)
    return motion_filter(x, radius * call.scale, sigma * call.scale, angles, (-45.0, 45.0))


def zoom_blur(x, c, call):
    zooms = [float(z) for z in np.arange(*c)]
    B, C, H, W = x.shape
    # All B*C planes as the channels of one channels-last image: the bilinear resize
    # then vectorises across planes (~3x faster on CPU than NCHW or channels-last with
    # C = 3), and the layout change is paid once for all the zooms.
    planes = x.reshape(1, B * C, H, W).contiguous(memory_format=torch.channels_last)
    out = planes.clone()
    for z in zooms:
        out += planes if z == 1 else clipped_zoom(planes, z)     # zoom 1 is the identity
    return out.div_(len(zooms) + 1).view(B, C, H, W)


def _random_affine(x: torch.Tensor, jitter: float, call) -> torch.Tensor:
    """make_cifar_c's affine step: jitter three points, warp with cv2's REFLECT_101 border."""
    B, C, H, W = x.shape
    cy, cx, sq = H // 2, W // 2, min(H, W) // 3
    src = torch.tensor([[cx + sq, cy + sq], [cx + sq, cy - sq], [cx - sq, cy - sq]],
                       dtype=torch.float64)
    dst = src + call.rng.uniform((3, 2), -jitter, jitter).cpu().double()
    ones = torch.ones(B, 3, 1, dtype=torch.float64)
    fwd = torch.linalg.solve(torch.cat([src.expand(B, 3, 2), ones], 2), dst)  # (B, 3, 2)
    A = torch.cat([fwd.transpose(1, 2), torch.tensor([0.0, 0, 1]).expand(B, 1, 3)], 1)
    inv = torch.linalg.inv(A)[:, :2].float().to(x.device)     # dst pixel -> src pixel
    ys, xs = torch.meshgrid(torch.arange(H, device=x.device, dtype=x.dtype),
                            torch.arange(W, device=x.device, dtype=x.dtype), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, H * W, 3)
    sx, sy = (pts @ inv.transpose(1, 2)).view(B, H, W, 2).unbind(-1)
    grid = torch.stack([2 * sx / max(W - 1, 1) - 1, 2 * sy / max(H - 1, 1) - 1], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=True)


def elastic_transform(x, c, call):
    amplitude, sigma, jitter = c
    B, C, H, W = x.shape
    if jitter > 0:
        x = _random_affine(x, jitter * H, call)
    field = call.rng.uniform((2, H, W), -1.0, 1.0)
    if sigma > 0:
        field = _blur(field, (sigma * H, sigma * W), "symmetric", truncate=3.0)
    dy, dx = (field * (amplitude * H)).unbind(1)
    ys, xs = torch.meshgrid(torch.arange(H, device=x.device, dtype=x.dtype),
                            torch.arange(W, device=x.device, dtype=x.dtype), indexing="ij")
    # align_corners=False reflects about the outer pixel edges: scipy's mode='reflect'
    grid = torch.stack([(2 * (xs + dx) + 1) / W - 1, (2 * (ys + dy) + 1) / H - 1], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)


@lru_cache(maxsize=64)
def _box_ranges(n_in: int, n_out: int):
    """Input index ranges [start, stop) that PIL's BOX filter averages per output pixel."""
    scale = n_in / n_out
    centre = (np.arange(n_out) + 0.5) * scale
    # PIL includes input pixel j when (j + 0.5 - centre) / scale lies in (-0.5, 0.5]
    start = np.floor(centre - scale / 2 - 0.5).astype(np.int64) + 1
    stop = np.floor(centre + scale / 2 - 0.5).astype(np.int64) + 1
    start, stop = np.clip(start, 0, n_in - 1), np.clip(stop, 1, n_in)
    return torch.from_numpy(start), torch.from_numpy(np.maximum(stop, start + 1))


def _box_down(x: torch.Tensor, n_out: int, dim: int) -> torch.Tensor:
    start, stop = (t.to(x.device) for t in _box_ranges(x.shape[dim], n_out))
    edges = torch.cat([start[:1], stop])          # the ranges tile [start0, stop_last)
    cs = F.pad(x.cumsum(dim), (1, 0) if dim == -1 else (0, 0, 1, 0))
    sums = cs.index_select(dim, edges).diff(dim=dim)
    span = (stop - start).to(x.dtype)
    return sums / (span if dim == -1 else span[:, None])


def _round_half_up(v: torch.Tensor) -> torch.Tensor:
    # + 1e-3: a k-pixel mean of 8-bit values that is exactly .5 must not fall to .49999
    return v.add_(0.5 + 1e-3).floor_()


def pixelate(x, c, call):
    # PIL: resize(BOX) to int(side * c), then NEAREST back (CIFAR-C's BOX upscaling
    # picks the same source pixel, floor((i + 0.5) * in / out)). PIL resamples rows then
    # columns and stores each pass in 8 bits, rounding half up; two-pixel averages hit
    # the .5 often, so that rounding is kept (it brightens by ~0.3 levels). Working on
    # the 0-255 scale keeps the running sums of 8-bit images exact in float32.
    H, W = x.shape[-2:]
    h, w = max(1, int(H * c)), max(1, int(W * c))
    small = _round_half_up(_box_down(_round_half_up(_box_down(x * 255, w, -1)), h, -2))
    # torch's nearest-exact is that rule (checked for all sides 8..519 and the table's
    # ratios), ~2x faster than gathering rows and columns
    return F.interpolate(small, size=(H, W), mode="nearest-exact").div_(255)
