"""Batched tensor helpers shared by the corruption ops.

Everything works on float (B, C, H, W) batches on the images' device. Random draws come
from `SampleRNG`: CPU generators of the sample's own, so a sample's noise depends only on
its seed (not on the batch it travels in, nor on the device), and the drawn numbers are
copied to the device where the heavy math runs.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

_M64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def stream_seed(seed: int, stream: str) -> int:
    """Mix a user seed with a stream name so corruptions/severities draw unrelated noise."""
    return _splitmix64((int(seed) & _M64) ^ _splitmix64(zlib.crc32(stream.encode())))


class SampleRNG:
    """Per-sample CPU generators; every draw returns (B, *shape) on `device`.

    Each sample owns a torch generator (normals) and a numpy PCG64 generator (uniforms
    and integers: about twice as fast as torch's Mersenne twister here), both seeded from
    its seed and the stream name. Draws fill each sample's slice in turn, in the same
    order for every sample, so sample i's numbers are a function of its seed only.
    """

    def __init__(self, seeds: list[int], stream: str, device):
        self.seeds = [stream_seed(s, stream) for s in seeds]
        self.device = torch.device(device)
        self._torch: list[torch.Generator] | None = None
        self._numpy: list[np.random.Generator] | None = None

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, sl: slice) -> "SampleRNG":
        sub = SampleRNG([], "", self.device)
        sub.seeds = self.seeds[sl]
        sub._torch = None if self._torch is None else self._torch[sl]
        sub._numpy = None if self._numpy is None else self._numpy[sl]
        return sub

    def _torch_gens(self) -> list[torch.Generator]:
        if self._torch is None:
            self._torch = [torch.Generator().manual_seed(s) for s in self.seeds]
        return self._torch

    def _numpy_gens(self) -> list[np.random.Generator]:
        if self._numpy is None:
            # a different key than torch's, so the two streams are unrelated
            self._numpy = [np.random.Generator(np.random.PCG64(_splitmix64(s))) for s in self.seeds]
        return self._numpy

    def _out(self, out: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.from_numpy(out) if isinstance(out, np.ndarray) else out
        return t.to(self.device, non_blocking=True)

    def uniform(self, shape, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        out = np.empty((len(self), *shape), dtype=np.float32)
        for row, gen in zip(out.reshape(len(self), -1), self._numpy_gens()):
            gen.random(dtype=np.float32, out=row)
        if (low, high) != (0.0, 1.0):
            out *= high - low
            out += low
        return self._out(out)

    def normal(self, shape, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
        out = torch.empty((len(self), *shape))
        for row, gen in zip(out, self._torch_gens()):
            row.normal_(mean, std, generator=gen)
        return self._out(out)

    def integers(self, low: int, high: int, shape) -> torch.Tensor:
        """Uniform integers in [low, high), like numpy's randint."""
        out = np.empty((len(self), *shape), dtype=np.int64)
        for row, gen in zip(out.reshape(len(self), -1), self._numpy_gens()):
            row[:] = gen.integers(low, high, size=row.shape, dtype=np.int64)
        return self._out(out)


# ---------------------------------------------------------------- padding and filters

def pad_index(n: int, before: int, after: int, mode: str, device=None) -> torch.Tensor:
    """Source indices for positions -before .. n+after-1 of a length-n axis.

    Modes name the border conventions of the reference code: 'replicate' (cv2 REPLICATE,
    scipy 'nearest'), 'reflect101' (cv2 default, torch 'reflect'), 'symmetric' (scipy and
    skimage 'reflect'). Any pad width works, unlike F.pad's reflect.
    """
    i = torch.arange(-before, n + after, device=device)
    if mode == "replicate" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "reflect101":
        m = i.remainder(2 * n - 2)
        return torch.where(m >= n, 2 * n - 2 - m, m)
    if mode == "symmetric":
        m = i.remainder(2 * n)
        return torch.where(m >= n, 2 * n - 1 - m, m)
    raise ValueError(f"unknown pad mode {mode!r}")


def pad2d(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str):
    H, W = x.shape[-2:]
    if not (top or bottom or left or right):
        return x
    # F.pad is much faster than a gather, where it has the same border rule
    if x.ndim in (3, 4) and (mode == "replicate" or (
            mode == "reflect101" and max(top, bottom) < H and max(left, right) < W)):
        return F.pad(x, (left, right, top, bottom), mode="reflect" if mode != "replicate" else mode)
    if top or bottom:
        x = x.index_select(-2, pad_index(H, top, bottom, mode, x.device))
    if left or right:
        x = x.index_select(-1, pad_index(W, left, right, mode, x.device))
    return x


@lru_cache(maxsize=64)
def _gauss1d(sigma: float, truncate: float) -> tuple[float, ...]:
    # scipy.ndimage.gaussian_filter1d's kernel (what skimage.filters.gaussian uses)
    radius = int(truncate * sigma + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2) if sigma > 0 else (t == 0).astype(np.float64)
    return tuple(k / k.sum())


def _strip(x: torch.Tensor, w: torch.Tensor, ry: int, rx: int, side: str, mode: str):
    """Exact output of the border strip `side` ("top", "bottom", "left", "right")."""
    H, W = x.shape[-2:]
    if side in ("top", "bottom"):
        slab = x[..., :2 * ry, :] if side == "top" else x[..., H - 2 * ry:, :]
        pads = (ry, 0) if side == "top" else (0, ry)
        slab = pad2d(slab, *pads, rx, rx, mode)
    else:
        slab = x[..., :2 * rx] if side == "left" else x[..., W - 2 * rx:]
        pads = (rx, 0) if side == "left" else (0, rx)
        slab = pad2d(slab, ry, ry, *pads, mode)
    return F.conv2d(slab, w, groups=x.shape[1])


def correlate(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Same-size correlation of every channel with one odd kernel, border rule `mode`.

    The bulk is a depthwise conv with zero padding in channels-last layout (several
    times faster on CPU than padding first or convolving plane by plane); the border
    strips it gets wrong are recomputed from small padded slabs.
    """
    B, C, H, W = x.shape
    kh, kw = kernel.shape
    ry, rx = kh // 2, kw // 2
    w = kernel.to(x.device, x.dtype)[None, None].expand(C, 1, kh, kw).contiguous()
    x = x.contiguous(memory_format=torch.channels_last)
    if 2 * ry > H or 2 * rx > W:           # kernel wider than the image: pad it all
        return F.conv2d(pad2d(x, ry, ry, rx, rx, mode), w, groups=C)
    out = F.conv2d(x, w, groups=C, padding=(ry, rx))
    if ry:
        out[..., :ry, :] = _strip(x, w, ry, rx, "top", mode)
        out[..., H - ry:, :] = _strip(x, w, ry, rx, "bottom", mode)
    if rx:
        out[..., :rx] = _strip(x, w, ry, rx, "left", mode)
        out[..., W - rx:] = _strip(x, w, ry, rx, "right", mode)
    return out


def _shift_correlate(x: torch.Tensor, k, dim: int, mode: str) -> torch.Tensor:
    """1-D correlation along dim (-1 or -2) as a sum of shifted views of the padded input.

    For the short kernels here this beats a depthwise conv on CPU: every tap is one
    vectorised multiply-add over contiguous rows, with no layout change.
    """
    r, n = len(k) // 2, x.shape[dim]
    xp = pad2d(x, 0, 0, r, r, mode) if dim == -1 else pad2d(x, r, r, 0, 0, mode)
    out = xp.narrow(dim, r, n) * k[r]
    for i in range(r):
        out.add_(xp.narrow(dim, i, n), alpha=k[i])
        out.add_(xp.narrow(dim, 2 * r - i, n), alpha=k[2 * r - i])
    return out


def separable(x: torch.Tensor, ky, kx, mode: str) -> torch.Tensor:
    """Correlate every channel with the column kernel ky then the row kernel kx."""
    if len(kx) > 1:
        x = _shift_correlate(x, kx, -1, mode)
    if len(ky) > 1:
        x = _shift_correlate(x, ky, -2, mode)
    return x


def gaussian_blur(x: torch.Tensor, sigma, mode: str = "replicate", truncate: float = 4.0):
    """skimage.filters.gaussian on each channel; sigma is a number or (sigma_y, sigma_x)."""
    sy, sx = (sigma, sigma) if np.isscalar(sigma) else sigma
    return separable(x, _gauss1d(float(sy), truncate), _gauss1d(float(sx), truncate), mode)


def _fast_len(n: int) -> int:
    # next length whose only prime factors are 2, 3, 5 (fast for pocketfft and cuFFT)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def correlate_valid_fft(xp: torch.Tensor, k: torch.Tensor, out_h: int, out_w: int):
    """Valid-region correlation of padded images xp with k (kh, kw) or per-sample (B, 1, kh, kw).

    Used for the big kernels (defocus disks, motion lines) where the FFT costs the same
    whatever the kernel size; the valid region never sees the circular wrap-around.
    """
    kh, kw = k.shape[-2:]
    fh, fw = _fast_len(xp.shape[-2]), _fast_len(xp.shape[-1])
    spec = torch.fft.rfft2(xp, s=(fh, fw))
    spec *= torch.fft.rfft2(torch.flip(k.to(xp.dtype), (-2, -1)), s=(fh, fw))
    y = torch.fft.irfft2(spec, s=(fh, fw))
    return y[..., kh - 1:kh - 1 + out_h, kw - 1:kw - 1 + out_w]


def filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str = "reflect101"):
    """cv2.filter2D (correlation, anchor at the centre) with one odd 2-D kernel."""
    kh, kw = kernel.shape
    H, W = x.shape[-2:]
    if kh * kw <= 121:
        return correlate(x, kernel, mode)
    xp = pad2d(x, kh // 2, kh // 2, kw // 2, kw // 2, mode)
    return correlate_valid_fft(xp, kernel.to(x.device), H, W)


# ---------------------------------------------------------------- motion kernels

def _motion_offsets(width: int, angles: torch.Tensor):
    """ImageMagick's MotionBlurImage taps (as the reference re-implements them).

    Tap i reads the pixel at (y - dy_i, x - dx_i), replicated at the border.
    """
    i = torch.arange(width, dtype=torch.float64, device=angles.device)
    rad = torch.deg2rad(angles.double())[:, None]
    dy = -torch.ceil(i * torch.sin(rad) - 0.5)
    dx = -torch.ceil(i * torch.cos(rad) - 0.5)
    return dy.long(), dx.long()


@lru_cache(maxsize=64)
def _motion_extent(width: int, lo: float, hi: float):
    angles = torch.linspace(lo, hi, 721, dtype=torch.float64)
    dy, dx = _motion_offsets(width, angles)
    return int(dy.min()), int(dy.max()), int(dx.min()), int(dx.max())


def motion_filter(x: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor,
                  angle_range: tuple[float, float], fft: bool | None = None) -> torch.Tensor:
    """Per-sample line blur at `angles` (degrees, (B,)) with replicated borders.

    The padding covers every angle in `angle_range`, not just the drawn ones, so the FFT
    size and hence the float rounding of a sample never depend on its batch mates. On
    CPU the few dozen taps are summed as shifted views instead (faster than the FFT
    there); on GPU one batched FFT beats thousands of small kernels.
    """
    B, C, H, W = x.shape
    width = 2 * max(1, round(radius)) + 1
    t = np.arange(width, dtype=np.float64)
    w = np.exp(-t**2 / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    w = torch.tensor(w / w.sum(), dtype=x.dtype, device=x.device)
    dy, dx = _motion_offsets(width, angles.to(x.device))
    # the reference stops at the first tap that leaves the image (and keeps the weights)
    w = torch.where((dy.abs() < H) & (dx.abs() < W), w, 0.0)
    dy, dx = dy.clamp(-H + 1, H - 1), dx.clamp(-W + 1, W - 1)
    y0, y1, x0, x1 = _motion_extent(width, *angle_range)
    y0, y1, x0, x1 = max(y0, -H + 1), min(y1, H - 1), max(x0, -W + 1), min(x1, W - 1)
    kh, kw = y1 - y0 + 1, x1 - x0 + 1
    xp = pad2d(x, y1, -y0, x1, -x0, "replicate")
    # reading x[y - dy] is correlation with a kernel holding w at row (y1 - dy)
    if not (x.device.type != "cpu" if fft is None else fft):
        return _shifted_sum(xp, y1 - dy, x1 - dx, w, H, W)
    flat = (y1 - dy) * kw + (x1 - dx)
    k = torch.zeros(B, kh * kw, dtype=x.dtype, device=x.device).scatter_add_(1, flat, w)
    return correlate_valid_fft(xp, k.view(B, 1, kh, kw), H, W)


def _shifted_sum(xp: torch.Tensor, rows, cols, weights, H: int, W: int) -> torch.Tensor:
    """out[b] = sum_i weights[b, i] * xp[b, :, rows[b, i]:+H, cols[b, i]:+W]."""
    out = xp.new_empty(xp.shape[0], xp.shape[1], H, W)
    for acc, src, rs, cs, ws in zip(out, xp, rows.tolist(), cols.tolist(), weights.tolist()):
        acc.zero_()
        for r, c, w in zip(rs, cs, ws):
            if w:
                acc.add_(src[:, r:r + H, c:c + W], alpha=w)
    return out


# ---------------------------------------------------------------- geometry and colour

def clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """Centre crop of side ceil(n / zoom) scaled back up, as scipy.ndimage.zoom(order=1).

    scipy's zoom maps the corner pixels onto each other (align_corners=True) and sizes
    the output round(n_crop * zoom); the excess is trimmed centrally as Hendrycks does.
    """
    H, W = x.shape[-2:]
    ch, cw = math.ceil(H / zoom), math.ceil(W / zoom)
    top, left = (H - ch) // 2, (W - cw) // 2
    oh, ow = round(ch * zoom), round(cw * zoom)
    y = F.interpolate(x[..., top:top + ch, left:left + cw], size=(oh, ow),
                      mode="bilinear", align_corners=True)
    th, tw = (oh - H) // 2, (ow - W) // 2
    return y[..., th:th + H, tw:tw + W]


_LUMA = (0.299, 0.587, 0.114)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) with cv2's RGB2GRAY weights."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (r * _LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2])


def value_saturation(x: torch.Tensor):
    """HSV value and saturation (skimage.color.rgb2hsv conventions)."""
    v = x.amax(1, keepdim=True)
    delta = v - x.amin(1, keepdim=True)
    s = torch.where(delta > 0, delta / v.clamp_min(1e-12), 0.0)
    return v, s


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())
