"""Natural corruptions (ImageNet-C and its four held-out extras) on whole batches in torch.

`corrupt(images, name, severity, seeds)` applies one of the 19 corruptions of Hendrycks &
Dietterich (2019) to a batch (B, C, H, W), uint8 or float, on the images' device. It
exists because the reference package (`imagecorruptions`, fork `imagecorruptions-imaug`)
works one numpy image at a time on the CPU, which makes corrupting a validation set for
every corruption x severity the slowest step of an evaluation; see methods.md §6.

Reproducibility: sample i draws all its random numbers from CPU generators seeded by
(seeds[i], name, severity), so its result does not depend on batch size, batch mates or
device (up to float rounding). Batches are processed in chunks that keep temporaries
small; chunking does not change results.

Constants: two tables (`corruption_tables`), "imagenet" (ImageNet-C, made for 224 px)
and "small" (CIFAR-10-C, milder, made for 32 px); "auto" picks by image size. Pixel
lengths scale with the image side over the table's reference side.

Deviations from the reference, all deliberate: frost blends a seeded procedural texture
instead of six bundled photos; spatter uses an exact Euclidean distance transform; JPEG
is a torch DCT round trip (PIL within a level or two); shot noise tabulates Poisson
quantiles on the 8-bit intensity grid; zoom blur trims its zoomed crops centrally
(Hendrycks' original) where the fork trims top-left; grey images pass the colour ops
as RGB and come back as luminance; outputs are rounded to uint8, not truncated.
The ops live in corruption_noise / _blur / _weather / _spatter / _jpeg; helpers in
corruption_ops.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import corruption_blur as _blur
from . import corruption_jpeg as _jpeg
from . import corruption_noise as _noise
from . import corruption_spatter as _spatter
from . import corruption_weather as _weather
from .corruption_ops import SampleRNG, luminance
from .corruption_tables import TABLES, Table

CATEGORIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
EXTRAS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = tuple(n for names in CATEGORIES.values() for n in names) + EXTRAS
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
CONSTANTS: tuple[str, ...] = ("auto", *TABLES)
SMALL_BELOW = 128   # image side under which the CIFAR-10-C constants apply

_OPS = {
    "gaussian_noise": _noise.gaussian_noise, "shot_noise": _noise.shot_noise,
    "impulse_noise": _noise.impulse_noise, "speckle_noise": _noise.speckle_noise,
    "brightness": _noise.brightness, "contrast": _noise.contrast,
    "saturate": _noise.saturate,
    "defocus_blur": _blur.defocus_blur, "glass_blur": _blur.glass_blur,
    "motion_blur": _blur.motion_blur, "zoom_blur": _blur.zoom_blur,
    "gaussian_blur": _blur.gaussian_blur, "elastic_transform": _blur.elastic_transform,
    "pixelate": _blur.pixelate,
    "snow": _weather.snow, "frost": _weather.frost, "fog": _weather.fog,
    "spatter": _spatter.spatter, "jpeg_compression": _jpeg.jpeg_compression,
}
# ops defined on colour: a grey image goes through them as RGB and back to luminance
_COLOUR = frozenset({"brightness", "saturate", "snow", "frost", "spatter"})
# values per chunk: on CPU, 4 MB temporaries are recycled by the allocator instead of
# page-faulted in fresh, and a chunk's passes stay in cache (measured: ~6 images at
# 224 px beat 1 and 13); GPUs want big batches
_CHUNK_VALUES = {"cpu": 1 << 20}
_GPU_CHUNK_VALUES = 1 << 24


@dataclass(frozen=True)
class Call:
    """What an op gets besides the images and its severity parameter."""
    rng: SampleRNG
    scale: float     # image side / the table's reference side
    table: Table


def constants_for(image_size: int) -> str:
    """Which severity table suits images of this side: "imagenet" from 128 px, else "small"."""
    return "imagenet" if image_size >= SMALL_BELOW else "small"


def corrupt(images: torch.Tensor, name: str, severity: int,
            seeds: torch.Tensor | Sequence[int], constants: str = "auto") -> torch.Tensor:
    """Corrupt a batch (B, C, H, W), C in {1, 3}, uint8 in [0, 255] or float in [0, 1].

    Returns the same dtype, shape and device, clamped to the valid range. `seeds` holds
    one integer per sample; `constants` is "imagenet", "small" or "auto" (by min(H, W)).
    """
    _check(images, name, severity, constants)
    B, C, H, W = images.shape
    seeds = _seed_list(seeds, B)
    table = TABLES[constants_for(min(H, W)) if constants == "auto" else constants]
    param = table.rows[name][int(severity) - 1]
    scale = min(H, W) / table.ref_size
    out = torch.empty_like(images)
    step = max(1, _CHUNK_VALUES.get(images.device.type, _GPU_CHUNK_VALUES) // (C * H * W))
    for i in range(0, B, step):
        x = images[i:i + step]
        # ops treat x as read-only: for float32 input it is the caller's tensor
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        rng = SampleRNG(seeds[i:i + step], f"{name}/{int(severity)}", x.device)
        y = _apply(name, x, param, Call(rng, scale, table))
        if images.dtype == torch.uint8:       # +0.5 then truncation: round half up
            # via int32: torch's direct float -> uint8 copy is ~4x slower on CPU
            out[i:i + step] = (y * 255).add_(0.5).clamp_(0, 255).to(torch.int32)
        else:
            out[i:i + step] = y.clamp(0, 1)
    return out


def _apply(name: str, x: torch.Tensor, param, call: Call) -> torch.Tensor:
    if name in _COLOUR and x.shape[1] == 1:
        rgb = _OPS[name](x.expand(-1, 3, -1, -1).contiguous(), param, call)
        return luminance(rgb.clamp(0, 1))
    return _OPS[name](x, param, call)


def _check(images, name, severity, constants) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, H, W) tensor with C in (1, 3), got {shape}")
    if images.dtype != torch.uint8 and not images.dtype.is_floating_point:
        raise ValueError(f"images must be uint8 or floating point, got {images.dtype}")
    if min(images.shape[-2:]) < 8:
        raise ValueError(f"images must be at least 8x8 pixels, got {tuple(images.shape[-2:])}")
    if name not in _OPS:
        raise ValueError(f"unknown corruption {name!r}; choose one of: {', '.join(ALL_CORRUPTIONS)}")
    if (isinstance(severity, bool) or not isinstance(severity, numbers.Integral)
            or severity not in SEVERITIES):
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if constants not in CONSTANTS:
        raise ValueError(f"constants must be one of {CONSTANTS}, got {constants!r}")


def _seed_list(seeds, batch: int) -> list[int]:
    values = seeds.reshape(-1).tolist() if isinstance(seeds, torch.Tensor) else list(seeds)
    if len(values) != batch:
        raise ValueError(f"need one seed per sample: {batch} images, {len(values)} seeds")
    return [int(s) for s in values]
