"""Weather corruptions: snow, frost, fog (spatter lives in `corruption_spatter`).

Same op signature as `corruption_noise`; these ops expect 3 channels (the dispatcher
expands grey images and converts the result back).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .corruption_ops import clipped_zoom, luminance, motion_filter, next_pow2

_PLASMA_BUDGET = 1 << 21   # map values generated at once (bounds memory for big maps)


def snow(x, c, call):
    mean, std, zoom, thresh, radius, sigma, mix = c
    s = call.scale
    layer = call.rng.normal((1, *x.shape[-2:]), mean, std)
    angles = call.rng.uniform((), -135.0, -45.0)
    # zooming the noise up turns single pixels into flakes; zoom < 1 would not crop
    layer = clipped_zoom(layer, max(1.0, zoom * s))
    layer = torch.where(layer < thresh, 0.0, layer).clamp_(0, 1)
    layer = motion_filter(layer, radius * s, sigma * s, angles, (-135.0, -45.0))
    layer = (layer * 255).round_().div_(255)      # the reference goes through uint8 here
    layer += layer.flip(-2, -1)                   # flakes fall from both sides
    out = torch.maximum(x, luminance(x).mul_(1.5).add_(0.5))
    return out.sub_(x).mul_(1 - mix).add_(x).add_(layer)


def _interleave(corner, right, below, centre) -> torch.Tensor:
    """(B, k, l) parts at offsets (0, 0), (0, 1), (1, 0), (1, 1) -> (B, 2k, 2l) grid."""
    B, k, l = corner.shape
    grid = corner.new_empty(B, k, 2, l, 2)
    grid[:, :, 0, :, 0] = corner
    grid[:, :, 0, :, 1] = right
    grid[:, :, 1, :, 0] = below
    grid[:, :, 1, :, 1] = centre
    return grid.view(B, 2 * k, 2 * l)


def _plasma(rng, n: int, decay: float, H: int, W: int) -> torch.Tensor:
    """Top-left (B, H, W) of diamond-square maps of side n, the reference's plasma_fractal
    (normalised to [0, 1] over the whole map).

    Instead of strided writes into the full map, each level builds the twice finer grid
    from its four interleaved parts (corners, square centres, two diamond sets), so every
    step is a few contiguous batched ops. All random numbers of a map are drawn at once.
    The finest level is never interleaved in full: the normalisation only needs the
    parts' min and max, and only the crop is assembled (small crops of big maps).
    """
    B = len(rng)
    sizes = [1 << i for i in range(n.bit_length() - 1)]
    noise = rng.uniform((sum(3 * k * k for k in sizes),), -1.0, 1.0)
    parts = (torch.zeros(B, 1, 1, device=rng.device),)
    wibble, used = 100.0, 0
    for k in sizes:
        m = _interleave(*parts) if len(parts) == 4 else parts[0]
        draws = noise[:, used:used + 3 * k * k].view(B, 3, k, k).mul_(wibble**2)
        used += 3 * k * k
        # wrap-around neighbours (the reference's np.roll) as views of one padded copy
        mp = F.pad(m[:, None], (0, 1, 0, 1), mode="circular")[:, 0]
        down, right = mp[:, 1:, :-1], mp[:, :-1, 1:]
        sq = draws[:, 0].add_((m + down).add_(right).add_(mp[:, 1:, 1:]), alpha=0.25)
        sp = F.pad(sq[:, None], (1, 0, 1, 0), mode="circular")[:, 0]
        up, left = sp[:, :-1, 1:], sp[:, 1:, :-1]                   # sq[i - 1], sq[j - 1]
        parts = (m, draws[:, 1].add_((sq + up).add_(m).add_(right), alpha=0.25),
                 draws[:, 2].add_((sq + left).add_(m).add_(down), alpha=0.25), sq)
        wibble /= decay
    lo = torch.stack([p.amin((1, 2)) for p in parts]).amin(0)[:, None, None]
    hi = torch.stack([p.amax((1, 2)) for p in parts]).amax(0)[:, None, None]
    if len(parts) == 4:
        h, w = -(-H // 2), -(-W // 2)
        crop = _interleave(*(p[:, :h, :w] for p in parts))
    else:
        crop = parts[0]
    return (crop[:, :H, :W] - lo) / (hi - lo)


def fog(x, c, call):
    amount, decay = c
    B, C, H, W = x.shape
    # CIFAR-C crops 32 px out of a 256 px map (factor 8): smoother fog on small images
    n = next_pow2(max(H, W)) * call.table.fog_map_factor
    step = max(1, _PLASMA_BUDGET // (n * n))
    maps = torch.cat([_plasma(call.rng[i:i + step], n, decay, H, W)
                      for i in range(0, B, step)])
    vmax = x.amax((1, 2, 3), keepdim=True)
    return (x + amount * maps[:, None]) * (vmax / (vmax + amount))


# (lattice cell in px at the reference size, weight, ridged?): broad smooth patches of
# rime plus ridged value noise, whose thin bright ridges read as ice-crystal veins
_FROST_OCTAVES = ((96, 1.0, False), (48, 0.6, False), (24, 1.0, True), (12, 1.2, True),
                  (6, 1.4, True), (3, 1.0, True))
_COARSE = 8        # octaves with cells of 8 px and more are made at quarter resolution


def _octave(rng, h: int, w: int, cell: float, ridged: bool) -> torch.Tensor:
    lattice = rng.uniform((1, math.ceil(h / cell) + 1, math.ceil(w / cell) + 1))
    up = F.interpolate(lattice, size=(h, w), mode="bilinear", align_corners=True)
    if ridged:
        up = up.mul_(2).sub_(1).abs_().neg_().add_(1).square_().square_()
    return up


def frost_texture(rng, H: int, W: int, scale: float, palettes) -> torch.Tensor:
    """Seeded procedural frost (B, 3, H, W) in [0, 1].

    The reference blends random crops of six frost photos bundled with the package; we
    synthesise the texture instead (no image files, any size, one seed per sample):
    multi-octave value noise, ridged at the fine octaves, coloured with the mean and
    spread of one of the photos (`palettes`, see corruption_tables) so the blend
    brightens and tints the image as much.
    """
    pick = rng.integers(0, len(palettes), ())
    hq, wq = math.ceil(H / 4), math.ceil(W / 4)
    coarse = torch.zeros(len(rng), 1, hq, wq, device=rng.device)
    fine = torch.zeros(len(rng), 1, H, W, device=rng.device)
    for cell, weight, ridged in _FROST_OCTAVES:
        cell = cell * scale
        if cell < 1:
            continue
        if cell >= _COARSE:
            coarse.add_(_octave(rng, hq, wq, cell / 4, ridged), alpha=weight)
        else:
            fine.add_(_octave(rng, H, W, cell, ridged), alpha=weight)
    fine += F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)
    std, mean = torch.std_mean(fine, dim=(-2, -1), keepdim=True)
    z = (fine - mean) / std.clamp_min(1e-6)
    stats = torch.tensor(palettes, device=rng.device)[pick][..., None, None] / 255
    colour, spread = stats[:, 0], stats[:, 1]
    return torch.addcmul(colour, spread, z).clamp_(0, 1)


def frost(x, c, call):
    keep, weight = c
    scale = call.table.frost_scale * call.scale
    tex = frost_texture(call.rng, *x.shape[-2:], scale, call.table.frost_palettes)
    return tex.mul_(weight).add_(x, alpha=keep)
