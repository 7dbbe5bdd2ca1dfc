"""Per-pixel corruptions: the noises and the photometric ones (brightness, contrast, saturate).

Each op takes float images (B, C, H, W) in [0, 1], its severity parameter `c` from the
table and the call context (`rng`, `scale`, `table`), and returns unclamped floats.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from .corruption_ops import value_saturation

_LEVELS = 256     # shot noise rates are tabulated on the 8-bit grid of intensities
_GUIDE = 4096     # inverse-CDF guide-table resolution


def gaussian_noise(x, c, call):
    return call.rng.normal(x.shape[1:], 0.0, c).add_(x)


def speckle_noise(x, c, call):
    return call.rng.normal(x.shape[1:], 1.0, c).mul_(x)          # x + x * N(0, c)


def impulse_noise(x, c, call):
    # skimage's s&p: each value flips with probability c, half to salt, half to pepper
    u = call.rng.uniform(x.shape[1:])
    # = where(u < c / 2, 1, where(u < c, 0, x)), ~2x faster on CPU: sign() is exact
    # (the float32 u - c is 0 only where u == c), masked selects are slow
    keep = torch.sub(u, c).sign_().add_(1).clamp_(max=1)      # 1 where u >= c, else 0
    salt = torch.rsub(u, c / 2).sign_().clamp_(min=0)         # 1 where u < c / 2
    return salt.addcmul_(x, keep)


@lru_cache(maxsize=32)
def _poisson_tables(rate: float, device: torch.device):
    """Quantile tables of Poisson(level / 255 * rate) for the 256 intensity levels.

    For uniform u in guide bin j = floor(u * G) of level l, the quantile is at least
    start[l, j] (the quantile of j / G) and equals it whenever u <= reach[l, j], the
    CDF at start (rounded down to float32 so the test is never wrong in that direction).
    The few other draws step up through the float64 CDF.
    """
    lam = torch.arange(_LEVELS, dtype=torch.float64)[:, None] * (rate / (_LEVELS - 1))
    kmax = int(rate + 12 * math.sqrt(rate) + 24)
    k = torch.arange(kmax, dtype=torch.float64)
    logpmf = k * torch.log(lam.clamp_min(1e-300)) - lam - torch.lgamma(k + 1)
    pmf = torch.where(lam > 0, logpmf.exp(), (k == 0).double())
    cdf = pmf.cumsum(1).clamp(max=1.0)
    cdf[:, -1] = 1.0
    grid = (torch.arange(_GUIDE, dtype=torch.float64) / _GUIDE).expand(_LEVELS, -1)
    start = torch.searchsorted(cdf, grid.contiguous())
    reach = cdf.gather(1, start)
    reach32 = reach.float()
    reach32 = torch.where(reach32.double() > reach, torch.nextafter(
        reach32, torch.tensor(-1.0)), reach32)
    # (start, reach) side by side and viewed as one 64-bit value: one random access
    # fetches both (the lookups dominate the cost; the table is too big for the caches)
    pairs = torch.stack([start.reshape(-1).float(), reach32.reshape(-1)], 1).view(torch.int64)
    return pairs.reshape(-1).to(device), cdf.reshape(-1).to(device), kmax


def _poisson(x: torch.Tensor, rate: float, u: torch.Tensor) -> torch.Tensor:
    """Poisson(x * rate) by inversion of one uniform per value (exact on the 8-bit grid).

    torch.poisson cannot take one generator per sample in a batched call; inversion keeps
    the draws per sample (the uniforms) and the data-dependent part batched on device.
    Float images off the 8-bit grid get their rate rounded to it (< 0.2 % of the rate).
    """
    pairs, cdf, kmax = _poisson_tables(float(rate), x.device)
    # level * G + bin, exact in float32 (< 2^24); int32 indices halve the traffic
    cell = (x * (_LEVELS - 1)).round_().clamp_(0, _LEVELS - 1).mul_(_GUIDE)
    cell = cell.add_((u * _GUIDE).floor_()).reshape(-1).int()
    start, reach = pairs.index_select(0, cell).view(torch.float32).view(-1, 2).unbind(1)
    k = start.contiguous()
    u = u.reshape(-1)
    idx = (u > reach).nonzero().squeeze(1)
    if idx.numel():
        level, uu = cell[idx].long() // _GUIDE, u[idx].double()
        kk = k[idx].long()
        todo = torch.arange(len(idx), device=x.device)
        while todo.numel():
            todo = todo[cdf[level[todo] * kmax + kk[todo]] < uu[todo]]
            kk[todo] += 1
        k[idx] = kk.to(k.dtype)
    return k.view(x.shape)


def shot_noise(x, c, call):
    return _poisson(x, c, call.rng.uniform(x.shape[1:])) / c


def brightness(x, c, call):
    # skimage rgb2hsv -> V + c -> hsv2rgb keeps hue and saturation, so every channel
    # scales by V'/V (and black becomes grey V'); same result, a handful of passes
    v = x.amax(1, keepdim=True)
    v2 = (v + c).clamp_(max=1.0)
    return torch.where(v > 0, x * (v2 / v.clamp_min(1e-12)), v2)


def contrast(x, c, call):
    means = x.mean((2, 3), keepdim=True)
    return (x - means) * c + means


def saturate(x, c, call):
    # With hue and value fixed, channel = V (1 - S w(hue)): rescaling S rescales V - channel.
    # Greys have hue 0 (red) in skimage, so they turn (V, V(1-S'), V(1-S')).
    gain, offset = c
    v, s = value_saturation(x)
    s2 = (s * gain + offset).clamp_(0, 1)
    coloured = v - (v - x) * (s2 / s.clamp_min(1e-12))
    grey = torch.cat([v, v * (1 - s2), v * (1 - s2)], 1)
    return torch.where(s > 0, coloured, grey)
