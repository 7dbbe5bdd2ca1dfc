"""JPEG compression as a batched DCT round trip, modelled on what PIL/libjpeg do.

Encoder: JFIF RGB -> YCbCr on 8-bit samples, 4:2:0 chroma subsampling (libjpeg's 2x2
average with its alternating rounding bias), edge replication to whole MCUs, 8x8 DCT,
quantisation with the Annex K tables scaled by `quality` exactly as jpeg_set_quality
(force_baseline, as PIL calls it). Decoder: dequantise, inverse DCT, 8-bit rounding,
libjpeg's "fancy" triangular chroma upsampling, YCbCr -> RGB. The entropy coding is
lossless and skipped. Differences to PIL come from libjpeg's integer DCTs (we use exact
float DCTs), so a few pixel values differ by a level or two.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from .corruption_ops import pad2d

_LUMA_Q = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_CHROMA_Q = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32


@lru_cache(maxsize=32)
def quant_table(base: tuple[int, ...], quality: int) -> torch.Tensor:
    """libjpeg's jpeg_quality_scaling + jpeg_add_quant_table(force_baseline=TRUE)."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    t = [min(max((b * scale + 50) // 100, 1), 255) for b in base]
    return torch.tensor(t, dtype=torch.float32)


@lru_cache(maxsize=1)
def _dct2() -> torch.Tensor:
    """Orthonormal 8x8 DCT-II as a 64x64 matrix acting on row-major flattened blocks."""
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return torch.kron(d, d)


@lru_cache(maxsize=32)
def _coder(base: tuple[int, ...], quality: int):
    """(forward, inverse) 64x64 matrices with the quantiser folded in.

    round(block @ forward) are the quantised coefficients, and their product with inverse
    is the dequantised inverse DCT, so quantisation costs a single rounding pass.
    """
    q = quant_table(base, quality).double()
    dct = _dct2()
    return (dct.T / q[None, :]).float(), (q[:, None] * dct).float()


def _code(plane: torch.Tensor, base, quality: int) -> torch.Tensor:
    """Code and decode level-shifted samples (N, H, W), H and W multiples of 8."""
    N, H, W = plane.shape
    fwd, inv = (m.to(plane.device) for m in _coder(base, quality))
    blocks = plane.view(N, H // 8, 8, W // 8, 8).transpose(2, 3).reshape(-1, 64)
    out = (blocks @ fwd).round_() @ inv
    out = out.view(N, H // 8, W // 8, 8, 8).transpose(2, 3).reshape(N, H, W)
    return out.round_().clamp_(-128, 127)


# JFIF colour transforms as 3x3 matrices; samples stay shifted by -128 in between
_TO_YCC = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
_TO_YCC_BIAS = (0.5 - 128, 0.4999, 0.4999)    # libjpeg's rounding constants, level shift
_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def _colour(x: torch.Tensor, matrix, bias) -> torch.Tensor:
    m = torch.tensor(matrix, dtype=x.dtype, device=x.device)
    b = torch.tensor(bias, dtype=x.dtype, device=x.device)[:, None]
    return torch.baddbmm(b.expand(len(x), 3, 1), m.expand(len(x), 3, 3),
                         x.flatten(2)).view(x.shape).floor_()


def _downsample(c: torch.Tensor) -> torch.Tensor:
    """libjpeg h2v2_downsample: 2x2 sums + bias alternating 1, 2 along the row, >> 2."""
    s = c[:, 0::2, 0::2] + c[:, 0::2, 1::2] + c[:, 1::2, 0::2] + c[:, 1::2, 1::2]
    bias = torch.tensor([1.0, 2.0], device=c.device).repeat(s.shape[-1] // 2 + 1)
    return s.add_(bias[:s.shape[-1]]).div_(4).floor_()


def _fancy_upsample(c: torch.Tensor) -> torch.Tensor:
    """libjpeg h2v2_fancy_upsample: triangle filter, 3/4 nearer + 1/4 farther sample."""
    up = pad2d(c, 1, 1, 0, 0, "replicate")
    col = torch.stack([3 * c + up[:, :-2], 3 * c + up[:, 2:]], 2).flatten(1, 2)
    side = pad2d(col, 0, 0, 1, 1, "replicate")
    even = (3 * col + side[..., :-2]).add_(8).div_(16).floor_()
    odd = (3 * col + side[..., 2:]).add_(7).div_(16).floor_()
    return torch.stack([even, odd], -1).flatten(-2)


def jpeg_roundtrip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """(B, C, H, W) floats in [0, 1], C in {1, 3} -> JPEG-decoded floats in [0, 1]."""
    B, C, H, W = x.shape
    mcu = 16 if C == 3 else 8
    v = pad2d((x * 255).round_(), 0, -H % mcu, 0, -W % mcu, "replicate")
    if C == 1:
        y = _code(v[:, 0] - 128, _LUMA_Q, quality)
        return y[:, None, :H, :W].add(128).div_(255)
    ycc = _colour(v, _TO_YCC, _TO_YCC_BIAS)
    y = _code(ycc[:, 0], _LUMA_Q, quality)
    # libjpeg's integer rounding in the resamplers is unaffected by the -128 shift
    chroma = _fancy_upsample(_code(_downsample(ycc[:, 1:].flatten(0, 1)), _CHROMA_Q, quality))
    ycc = torch.cat([y[:, None], chroma.view(B, 2, *y.shape[-2:])], 1)
    rgb = _colour(ycc, _TO_RGB, (128.5, 128.5, 128.5)).clamp_(0, 255)
    return rgb[..., :H, :W].div_(255)


def jpeg_compression(x, c, call):
    return jpeg_roundtrip(x, c)
