"""Input-attribution maps of one member on a fixed subset of a validation set
(methods.md §4), with captum.

Maps are taken with respect to [0, 1] pixels (each member normalizes inside its own
forward, so the black baseline is the same image for every member), for a target that
is the same for every member, then reduced over channels and pooled to a common
grid × grid so that members of different resolutions and families compare cell by cell.
Models run in float32: attributions are gradients, and bf16 would blur them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ensui.engine.data.augment import resize_batch
from ensui.engine.models.taps import grad_cam_layer

# GradientShap draws its baselines between black and white images, with this noise.
SHAP_STDEV = 0.09


def attribute(model: nn.Module, x: Tensor, target: Tensor, method: str, cfg) -> Tensor:
    """Raw captum attributions for pixels `x` (B, 3, H, W) in [0, 1]: (B, 3, H, W), or
    (B, 1, h, w) for Grad-CAM. `cfg` holds n_steps, shap_samples and seed."""
    import captum.attr as ca

    if method == "integrated_gradients":
        # All steps of all images in one pass: internal_batch_size splits the steps.
        return ca.IntegratedGradients(model).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=cfg.n_steps,
            internal_batch_size=len(x) * cfg.n_steps)
    if method == "saliency":
        return ca.Saliency(model).attribute(x, target=target, abs=False)
    if method == "input_x_gradient":
        return ca.InputXGradient(model).attribute(x, target=target)
    if method == "gradient_shap":
        torch.manual_seed(cfg.seed)  # GradientShap draws baselines and noise
        baselines = torch.stack([torch.zeros_like(x[0]), torch.ones_like(x[0])])
        return ca.GradientShap(model).attribute(x, baselines, n_samples=cfg.shap_samples,
                                                stdevs=SHAP_STDEV, target=target)
    if method == "layer_grad_cam":
        with grad_cam_layer(model) as layer:
            return ca.LayerGradCam(model, layer).attribute(x, target=target,
                                                           relu_attributions=True)
    raise ValueError(f"unknown attribution method '{method}'")


def pool(attributions: Tensor, grid: int, reduction: str = "abs_sum") -> Tensor:
    """(B, C, H, W) attributions → (B, grid·grid): channels reduced, then averaged
    into grid cells, or bilinearly spread when the map is coarser than the grid
    (Grad-CAM on a 7 × 7 or, at tiny scale, 1 × 1 feature map)."""
    a = attributions.detach().float()
    if reduction == "abs_sum":
        a = a.abs().sum(1, keepdim=True)
    elif reduction == "sum":
        a = a.sum(1, keepdim=True)
    elif reduction == "l2":
        a = a.square().sum(1, keepdim=True).sqrt()
    else:
        raise ValueError(f"unknown channel reduction '{reduction}'")
    if min(a.shape[-2:]) >= grid:
        a = F.adaptive_avg_pool2d(a, grid)
    else:
        a = F.interpolate(a, size=(grid, grid), mode="bilinear", align_corners=False)
    return a.flatten(1)


def attribution_maps(model: nn.Module, images: Tensor, targets: Tensor, method: str, cfg,
                     device: torch.device, image_size: int) -> np.ndarray:
    """float32 (N, grid·grid) pooled maps of uint8 `images` for `targets`, in order."""
    model.eval()
    chunks = []
    for start in range(0, len(images), cfg.batch_size):
        x = resize_batch(images[start:start + cfg.batch_size].to(device), image_size)
        target = targets[start:start + cfg.batch_size].to(device)
        raw = attribute(model, x.requires_grad_(), target, method, cfg)
        chunks.append(pool(raw, cfg.grid, cfg.reduction).cpu())
        model.zero_grad(set_to_none=True)
    return torch.cat(chunks).numpy().astype(np.float32)


@torch.inference_mode()
def features(model: nn.Module, images: Tensor, device: torch.device, image_size: int,
             batch_size: int = 256) -> np.ndarray:
    """float32 (N, D) penultimate pooled features of uint8 `images`, in order."""
    model.eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        x = resize_batch(images[start:start + batch_size].to(device), image_size)
        chunks.append(model.features(x).float().cpu())
    return torch.cat(chunks).numpy()
