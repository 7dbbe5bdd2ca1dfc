"""Validation sets: pooling, generated-set caching, released ImageNet-C and CIFAR-10-C."""

import numpy as np
import pytest
import torch
from PIL import Image

from ensui.engine import artifacts
from ensui.engine.data import validation
from ensui.engine.data.arrays import ImageArray
from ensui.engine.data.corruptions import corrupt
from ensui.engine.data.validation import CifarC, GeneratedParts, ImageNetC, build_set, parts_of


def _clean(n=10, size=32):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    return ImageArray(images, torch.arange(n) % 3, tuple(f"img{i}" for i in range(n)),
                      ("a", "b", "c"))


def test_categories_pool_their_corruptions_over_severities():
    assert parts_of("clean", [1, 2]) == []
    assert parts_of("noise", [3, 1]) == [("gaussian_noise", 1), ("gaussian_noise", 3),
                                          ("shot_noise", 1), ("shot_noise", 3),
                                          ("impulse_noise", 1), ("impulse_noise", 3)]
    assert len(parts_of("blur", [1, 2, 3, 4, 5])) == 20
    assert parts_of("fog", [2]) == [("fog", 2)]


def test_generated_set_is_the_corruption_of_the_clean_set(tmp_path):
    clean = _clean()
    parts = GeneratedParts(clean, tmp_path, "small", seed=4, identity={"x": 1})
    pooled = build_set("weather", [2], clean, parts)
    assert len(pooled) == 40 and pooled.ids[0] == "snow/2/img0" and pooled.ids[-1] == "brightness/2/img9"
    assert torch.equal(pooled.labels, clean.labels.repeat(4))
    images = torch.cat([b for b, _, _ in pooled.batches(7)])
    seeds = 4 * 1_000_003 + torch.arange(10)
    expected = corrupt(clean.images, "frost", 2, seeds, "small")
    assert torch.equal(images[10:20], expected)  # the frost part, same per-sample seeds


def test_generated_parts_are_cached_identical_and_regenerated_when_damaged(tmp_path, monkeypatch):
    clean = _clean()
    first = GeneratedParts(clean, tmp_path, "small", 0, {"x": 1}).part("contrast", 3).images
    cached = next(tmp_path.rglob("contrast-3.npy"))
    calls = []
    real = validation.corrupt
    monkeypatch.setattr(validation, "corrupt", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = GeneratedParts(clean, tmp_path, "small", 0, {"x": 1}).part("contrast", 3).images
    assert np.array_equal(first, again) and calls == []  # read from the cache
    cached.write_bytes(cached.read_bytes()[:-10])
    third = GeneratedParts(clean, tmp_path, "small", 0, {"x": 1}).part("contrast", 3).images
    assert calls and np.array_equal(first, third) and artifacts.is_intact(cached)


def test_different_identity_different_cache(tmp_path):
    clean = _clean()
    GeneratedParts(clean, tmp_path, "small", 0, {"x": 1}).part("fog", 1)
    GeneratedParts(clean, tmp_path, "small", 1, {"x": 2}).part("fog", 1)
    assert len(list(tmp_path.rglob("fog-1.npy"))) == 2


def test_released_imagenet_c_folders(tmp_path):
    for severity in (1, 2):
        for cls in ("n01", "n02"):
            folder = tmp_path / "gaussian_noise" / str(severity) / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((40, 40, 3), 40 * i + severity, np.uint8)).save(folder / f"{i}.png")
    source = ImageNetC(tmp_path, 32, ("n01", "n02"))
    part = source.part("gaussian_noise", 2)
    assert len(part) == 6 and part.ids[0] == "gaussian_noise/2/n01/0.png"
    assert part.labels.tolist() == [0, 0, 0, 1, 1, 1]
    images, labels, start = next(part.batches(4))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert int(images[1, 0, 0, 0]) == 42  # decoded as is: no re-corruption, no normalization
    with pytest.raises(Exception, match="ImageNet-C folder missing"):
        source.part("gaussian_noise", 5)


def test_released_cifar_c_arrays(tmp_path):
    n = 4
    images = np.stack([np.full((32, 32, 3), i, np.uint8) for i in range(5 * n)])
    np.save(tmp_path / "fog.npy", images)
    np.save(tmp_path / "labels.npy", np.arange(5 * n) % 10)
    part = CifarC(tmp_path).part("fog", 3)
    assert len(part) == n and part.labels.tolist() == [8, 9, 0, 1]
    batch, _, _ = next(part.batches(10))
    assert batch.shape == (4, 3, 32, 32) and batch[:, 0, 0, 0].tolist() == [8, 9, 10, 11]
    with pytest.raises(Exception, match="CIFAR-10-C file missing"):
        CifarC(tmp_path).part("snow", 1)
