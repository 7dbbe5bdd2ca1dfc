"""DINO's multi-crop augmentation applied to whole batches of tensors (methods.md §8).

DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers")
trains on 2 global crops and N small local crops of every image. As in its
`DataAugmentationDINO`, every view gets a random resized crop (aspect 3/4-4/3),
a horizontal flip (p 0.5), colour jitter (p 0.8: brightness 0.4, contrast 0.4,
saturation 0.2, hue 0.1), grayscale (p 0.2) and a Gaussian blur (sigma 0.1-2 px) with
p 1.0 on the first global view, 0.1 on the second and 0.5 on the locals; the second
global view is also solarized (p 0.2).

The crop and flip reuse `augment.py`'s single affine `grid_sample` per sample, so a
batch is augmented in a few tensor calls on its device. Departures from torchvision/PIL,
kept because they are batch-friendly and do not change what the recipe asks for:
- bilinear resampling (DINO: bicubic);
- the jitter operations run in a fixed order (brightness, contrast, saturation, hue)
  instead of a random permutation per image;
- hue is a rotation of the chroma plane in YIQ space, a linear approximation of
  torchvision's HSV hue shift;
- the blur is a separable Gaussian truncated at 3 sigma with replicated borders
  (PIL: extended box blur). Sigma is in output pixels, as PIL's radius: DINO's
  (0.1, 2.0) is meant for 224/96-px crops, so callers at tiny scale may shrink it.

All randomness is drawn on the CPU from the caller's generator, per sample and per view
(`MultiCrop.draw`), so the draws can be inspected and a batch is reproducible on any
device. Normalization is not here: models normalize inside their forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ensui.engine.data.augment import crop_affine, crop_boxes

GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114],
                            [0.596, -0.274, -0.322],
                            [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


@dataclass(frozen=True)
class ViewDraw:
    """One view's random parameters for every sample of a batch (CPU tensors)."""

    size: int
    boxes: Tensor      # (B, 4) top, left, h, w in input pixels
    flips: Tensor      # (B,) bool
    jitter: Tensor     # (B,) bool: colour jitter applied
    factors: Tensor    # (B, 4) brightness, contrast, saturation factors and hue shift
    gray: Tensor       # (B,) bool
    blur: Tensor       # (B,) bool
    sigma: Tensor      # (B,) blur standard deviation in output pixels
    solarize: Tensor   # (B,) bool


@dataclass(frozen=True)
class MultiCrop:
    global_size: int
    local_size: int
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    n_local: int = 8
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5)       # global 1, global 2, locals
    solarize_p: tuple[float, float, float] = (0.0, 0.2, 0.0)   # global 1, global 2, locals
    sigma: tuple[float, float] = (0.1, 2.0)

    @property
    def n_views(self) -> int:
        return 2 + self.n_local

    def __call__(self, images: Tensor, gen: torch.Generator) -> list[Tensor]:
        """uint8 or float (B, 3, H, W) -> [2 global (B, 3, gs, gs), N local (B, 3, ls, ls)]."""
        draws = self.draw(len(images), images.shape[-2], images.shape[-1], gen)
        return self.render(images, draws)

    def draw(self, batch: int, height: int, width: int, gen: torch.Generator) -> list[ViewDraw]:
        """Every view's parameters, globals first; the order of draws is fixed."""
        return [self._draw_view(v, batch, height, width, gen) for v in range(self.n_views)]

    def render(self, images: Tensor, draws: list[ViewDraw]) -> list[Tensor]:
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        return [_render_view(x, d) for d in draws]

    def _draw_view(self, view: int, n: int, height: int, width: int, gen) -> ViewDraw:
        local = view >= 2
        kind = min(view, 2)  # index into the per-view probabilities
        scale = self.local_scale if local else self.global_scale
        boxes = crop_boxes(n, height, width, scale, self.ratio, gen)
        flips = _coin(n, self.hflip, gen)
        jitter = _coin(n, self.jitter_p, gen)
        factors = torch.stack([_factor(n, self.brightness, gen), _factor(n, self.contrast, gen),
                               _factor(n, self.saturation, gen),
                               _uniform(n, -self.hue, self.hue, gen)], dim=1)
        gray = _coin(n, self.gray_p, gen)
        blur = _coin(n, self.blur_p[kind], gen)
        sigma = _uniform(n, self.sigma[0], self.sigma[1], gen)
        solarize = _coin(n, self.solarize_p[kind], gen)
        return ViewDraw(self.local_size if local else self.global_size, boxes, flips, jitter,
                        factors, gray, blur, sigma, solarize)


def _coin(n: int, p: float, gen) -> Tensor:
    return torch.rand(n, generator=gen) < p


def _uniform(n: int, low: float, high: float, gen) -> Tensor:
    return torch.empty(n).uniform_(low, high, generator=gen)


def _factor(n: int, strength: float, gen) -> Tensor:
    """torchvision's jitter factor range [max(0, 1 - s), 1 + s]."""
    return _uniform(n, max(0.0, 1 - strength), 1 + strength, gen)


def _render_view(x: Tensor, d: ViewDraw) -> Tensor:
    dev = x.device
    theta = crop_affine(d.boxes, d.flips, x.shape[-2], x.shape[-1]).to(dev)
    grid = F.affine_grid(theta, [len(x), x.shape[1], d.size, d.size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                        align_corners=False).clamp_(0, 1)
    out = _where(d.jitter, color_jitter(out, d.factors.to(dev)), out)
    out = _where(d.gray, grayscale(out).expand_as(out), out)
    out = _where(d.blur, gaussian_blur(out, d.sigma.to(dev)), out)
    out = _where(d.solarize, solarize(out), out)
    return out.clamp_(0, 1)


def _where(mask: Tensor, yes: Tensor, no: Tensor) -> Tensor:
    return torch.where(mask.to(no.device)[:, None, None, None], yes, no)


def grayscale(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma."""
    w = torch.tensor(GRAY, device=x.device, dtype=x.dtype)
    return (x * w[:, None, None]).sum(1, keepdim=True)


def color_jitter(x: Tensor, factors: Tensor) -> Tensor:
    """Brightness, contrast, saturation (torchvision's blends, clamped after each), then hue."""
    b, c, s = (f[:, None, None, None] for f in factors[:, :3].unbind(1))
    x = (x * b).clamp(0, 1)
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (c * x + (1 - c) * mean).clamp(0, 1)
    x = (s * x + (1 - s) * grayscale(x)).clamp(0, 1)
    return _hue_shift(x, factors[:, 3])


def _hue_shift(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the (I, Q) chroma plane by shift * 2 pi: luma kept, hue turned."""
    to_yiq, to_rgb = _RGB_TO_YIQ.to(x.device, x.dtype), _YIQ_TO_RGB.to(x.device, x.dtype)
    angle = shift.to(x.dtype) * 2 * math.pi
    cos, sin = angle.cos(), angle.sin()
    rot = torch.zeros(len(x), 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    mix = to_rgb @ rot @ to_yiq  # (B, 3, 3) per-sample colour matrix
    return torch.einsum("bij,bjhw->bihw", mix, x).clamp(0, 1)


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a per-sample sigma (pixels), replicated borders."""
    n, ch = x.shape[:2]
    radius = max(1, math.ceil(3 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-offsets ** 2 / (2 * sigma.to(x.dtype)[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(ch, 0)  # (B*C, k)
    flat = x.reshape(1, n * ch, *x.shape[2:])
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"),
                    kernel[:, None, :, None], groups=n * ch)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"),
                    kernel[:, None, None, :], groups=n * ch)
    return flat.reshape_as(x)


def solarize(x: Tensor, threshold: float = 0.5) -> Tensor:
    """Invert pixels at or above the threshold (PIL's ImageOps.solarize at 128)."""
    return torch.where(x >= threshold, 1 - x, x)
