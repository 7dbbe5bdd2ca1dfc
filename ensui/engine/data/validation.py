"""Validation sets by name: `clean`, a corruption category (`noise`, `blur`, `weather`,
`digital`, each pooling its corruptions over the chosen severities) or one corruption.

A set is made of parts, one per (corruption, severity). Generated parts are the clean
set corrupted with per-sample seeds, cached on disk as checked `.npy` files, so a set
is identical every time and made once. Released data (ImageNet-C folders, CIFAR-10-C
arrays) is read as it is: already corrupted and sized, it is only normalized, which
every model does inside its forward.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ensui.engine import artifacts
from ensui.engine.data.arrays import ImageArray
from ensui.engine.data.corruptions import CATEGORIES, constants_for, corrupt
from ensui.engine.data.folders import FolderImages
from ensui.errors import EnsuiError

CHUNK = 256


def parts_of(name: str, severities: list[int]) -> list[tuple[str, int]]:
    """The (corruption, severity) parts of a named set; `clean` has none."""
    if name == "clean":
        return []
    corruptions = CATEGORIES.get(name, (name,))
    return [(c, s) for c in corruptions for s in sorted(severities)]


@dataclass
class PartSet:
    """Concatenated parts read in order; `batches()` yields (uint8, labels, start)."""

    parts: list  # objects with ids, labels, __len__, batches()

    def __post_init__(self):
        self.ids = tuple(i for p in self.parts for i in p.ids)
        self.labels = torch.cat([p.labels for p in self.parts])

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray) -> ImageArray:
        """The samples at sorted positions `index` of the concatenated parts."""
        chosen, offset = [], 0
        for part in self.parts:
            local = index[(index >= offset) & (index < offset + len(part))] - offset
            if local.size:
                chosen.append(part.take(local))
            offset += len(part)
        return ImageArray(torch.cat([c.images for c in chosen]),
                          torch.cat([c.labels for c in chosen]),
                          tuple(i for c in chosen for i in c.ids), ())

    def batches(self, batch_size: int):
        offset = 0
        for part in self.parts:
            for images, labels, start in part.batches(batch_size):
                yield images, labels, offset + start
            offset += len(part)


@dataclass
class ArrayPart:
    images: np.ndarray  # uint8 (N, 3, H, W), possibly memory-mapped
    labels: torch.Tensor
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray) -> ImageArray:
        images = torch.from_numpy(np.ascontiguousarray(self.images[index]))
        return ImageArray(images, self.labels[index], tuple(self.ids[i] for i in index), ())

    def batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(self.images[start:start + batch_size]))
            yield chunk, self.labels[start:start + batch_size], start


class GeneratedParts:
    """Corrupted copies of a clean set, generated once and cached under `cache_dir`."""

    def __init__(self, clean, cache_dir: Path, constants: str, seed: int, identity: dict):
        self.clean, self.cache_dir, self.seed = clean, cache_dir, seed
        self.constants = constants
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.folder = cache_dir / digest

    def part(self, corruption: str, severity: int) -> ArrayPart:
        path = self.folder / f"{corruption}-{severity}.npy"
        images = artifacts.load_array(path) if path.exists() else None
        if images is None:
            images = self._generate(corruption, severity)
            artifacts.save_array(images, path)
        ids = tuple(f"{corruption}/{severity}/{i}" for i in self.clean.ids)
        return ArrayPart(images, self.clean.labels, ids)

    def _generate(self, corruption: str, severity: int) -> np.ndarray:
        chunks = []
        for images, _, start in self.clean.batches(CHUNK):
            seeds = self.seed * 1_000_003 + torch.arange(start, start + len(images))
            chunks.append(corrupt(images, corruption, severity, seeds, self.constants).numpy())
        return np.concatenate(chunks)


def resolve_constants(choice: str, image_size: int) -> str:
    return constants_for(image_size) if choice == "auto" else choice


class ImageNetC:
    """Released ImageNet-C: `<root>/<corruption>/<severity>/<class>/<file>`."""

    def __init__(self, root: Path, size: int, classes: tuple[str, ...]):
        self.root, self.size, self.classes = root, size, classes

    def part(self, corruption: str, severity: int):
        folder = self.root / corruption / str(severity)
        if not folder.is_dir():
            raise EnsuiError(f"{folder}: ImageNet-C folder missing ({corruption}, severity {severity})")
        from torchvision.transforms import v2

        # Released images are already 224 px centre crops: decode only, resize if the
        # experiment runs at another size.
        transform = v2.Compose([v2.PILToTensor(), v2.Resize(self.size, antialias=True),
                                v2.CenterCrop(self.size)])
        part = FolderImages(folder, self.size, self.classes, transform=transform)
        part.ids = tuple(f"{corruption}/{severity}/{i}" for i in part.ids)
        return part


class CifarC:
    """Released CIFAR-10-C: `<root>/<corruption>.npy` (5 × N images) and `labels.npy`."""

    def __init__(self, root: Path):
        self.root = root

    def part(self, corruption: str, severity: int) -> ArrayPart:
        path = self.root / f"{corruption}.npy"
        labels_path = self.root / "labels.npy"
        for needed in (path, labels_path):
            if not needed.is_file():
                raise EnsuiError(f"{needed}: CIFAR-10-C file missing")
        images = np.load(path, mmap_mode="r", allow_pickle=False)
        labels = np.load(labels_path, allow_pickle=False)
        if images.ndim != 4 or images.shape[0] % 5 or images.shape[0] != len(labels):
            raise EnsuiError(f"{path}: expected (5·N, H, W, 3) images matching labels.npy")
        n = images.shape[0] // 5
        block = slice((severity - 1) * n, severity * n)
        chw = np.ascontiguousarray(images[block].transpose(0, 3, 1, 2))
        ids = tuple(f"{corruption}/{severity}/{i}" for i in range(n))
        return ArrayPart(chw, torch.from_numpy(labels[block].astype(np.int64)), ids)


def build_set(name: str, severities: list[int], clean, source) -> PartSet | object:
    """The named validation set, from the clean set and a part source."""
    if name == "clean":
        return clean
    return PartSet([source.part(c, s) for c, s in parts_of(name, severities)])
