import math

import torch

from ensui.engine.data.augment import Augment, crop_boxes, resize_batch


def _images(n=6, size=16):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)


def test_identity_crop_and_exact_flip():
    x = _images()
    keep = Augment(16, (1.0, 1.0), (1.0, 1.0), hflip=0.0)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(keep, x.float() / 255, atol=1e-6)
    flip = Augment(16, (1.0, 1.0), (1.0, 1.0), hflip=1.0)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(flip, x.flip(-1).float() / 255, atol=1e-6)


def test_crop_matches_slow_per_image_reference():
    """A box covering the top-left quarter resamples exactly that quarter."""
    x = _images(1, 16)
    from ensui.engine.data import augment as aug

    box = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    theta = aug.crop_affine(box, torch.tensor([False]), 16, 16)
    grid = torch.nn.functional.affine_grid(theta, [1, 3, 8, 8], align_corners=False)
    out = torch.nn.functional.grid_sample(x.float(), grid, align_corners=False)
    assert torch.allclose(out, x[..., :8, :8].float(), atol=1e-4)


def test_boxes_respect_scale_ratio_and_bounds():
    gen = torch.Generator().manual_seed(1)
    boxes = crop_boxes(2000, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3), gen)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 32).all() and (left + w <= 32).all()
    area = h * w / 1024
    assert area.min() >= 0.05 and area.max() <= 1.0
    ratio = w / h
    inside = (ratio >= 0.6) & (ratio <= 1.7)
    assert inside.float().mean() > 0.99
    assert math.isclose(area.mean().item(), 0.5, abs_tol=0.1)


def test_same_generator_same_batch_and_range():
    x = _images()
    a = Augment(24)(x, torch.Generator().manual_seed(3))
    b = Augment(24)(x, torch.Generator().manual_seed(3))
    c = Augment(24)(x, torch.Generator().manual_seed(4))
    assert a.shape == (6, 3, 24, 24) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_resize_batch():
    x = _images(2, 8)
    assert resize_batch(x, 8).shape == (2, 3, 8, 8)
    assert resize_batch(x, 32).shape == (2, 3, 32, 32)
