"""Table iii's training transforms applied to whole batches of tensors.

RandomResizedCrop and RandomHorizontalFlip become one affine resampling per sample
(`grid_sample`, bilinear), so a batch is augmented in a single call on its device
instead of image by image. Normalization is not here: every model normalizes inside
its own forward, so augmented batches stay in [0, 1] pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ATTEMPTS = 10  # as torchvision: sample up to 10 boxes, else fall back to a centre crop
TABLE_III = {"scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3), "hflip": 0.5}


def augment_params(crop_scale: tuple[float, float] | None, hflip: float | None) -> dict:
    """A training job's crop and flip: Table iii's, with the spec's overrides."""
    return {"scale": list(crop_scale or TABLE_III["scale"]), "ratio": list(TABLE_III["ratio"]),
            "hflip": TABLE_III["hflip"] if hflip is None else hflip}


@dataclass(frozen=True)
class Augment:
    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """uint8 or float (B, C, H, W) -> float (B, C, size, size) in [0, 1]."""
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        boxes = crop_boxes(len(x), x.shape[-2], x.shape[-1], self.scale, self.ratio, gen)
        flips = torch.rand(len(x), generator=gen) < self.hflip
        theta = crop_affine(boxes, flips, x.shape[-2], x.shape[-1]).to(x.device)
        grid = F.affine_grid(theta, [len(x), x.shape[1], self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                             align_corners=False).clamp_(0, 1)


def crop_boxes(n: int, height: int, width: int, scale, ratio, gen) -> torch.Tensor:
    """(n, 4) boxes (top, left, h, w) drawn as torchvision's RandomResizedCrop draws them."""
    area = height * width
    target = area * torch.empty(n, ATTEMPTS).uniform_(scale[0], scale[1], generator=gen)
    log_r = torch.empty(n, ATTEMPTS).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    aspect = log_r.exp()
    w = (target * aspect).sqrt().round()
    h = (target / aspect).sqrt().round()
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))
    rows = torch.arange(n)
    h_pick, w_pick = h[rows, first.clamp(min=0)], w[rows, first.clamp(min=0)]
    ch, cw = _centre_fallback(height, width, ratio)
    h_pick = torch.where(first >= 0, h_pick, torch.tensor(float(ch)))
    w_pick = torch.where(first >= 0, w_pick, torch.tensor(float(cw)))
    top = (torch.rand(n, generator=gen) * (height - h_pick + 1)).floor()
    left = (torch.rand(n, generator=gen) * (width - w_pick + 1)).floor()
    return torch.stack([top, left, h_pick, w_pick], dim=1)


def _centre_fallback(height: int, width: int, ratio) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return round(width / ratio[0]), width
    if in_ratio > ratio[1]:
        return height, round(height * ratio[1])
    return height, width


def crop_affine(boxes: torch.Tensor, flips: torch.Tensor, height: int,
                width: int) -> torch.Tensor:
    """Affine matrices mapping the output grid onto each box (normalized coordinates)."""
    top, left, h, w = boxes.unbind(1)
    sx = w / width * torch.where(flips, -1.0, 1.0)
    sy = h / height
    cx = (2 * left + w) / width - 1
    cy = (2 * top + h) / height - 1
    zeros = torch.zeros_like(sx)
    return torch.stack([torch.stack([sx, zeros, cx], 1), torch.stack([zeros, sy, cy], 1)], 1)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 or float batch -> float [0, 1] at `size` (no-op when it already is)."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).clamp_(0, 1)
