"""Image folders in the ImageNet layout: `<root>/train/<class>/*`, `<root>/val/<class>/*`.

Training images are decoded and augmented per sample in DataLoader workers (the
photos differ in size, so they cannot be batched before cropping); validation images
are resized to 256/224 of the target and centre-cropped, as ImageNet evaluation does.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from ensui.engine.data.arrays import ImageArray
from ensui.errors import EnsuiError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}


def list_images(root: Path, classes: tuple[str, ...] | None = None):
    """(paths, labels, classes) of `<root>/<class>/<file>`, classes sorted by name."""
    if not root.is_dir():
        raise EnsuiError(f"{root}: folder not found")
    found = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    classes = classes or found
    if not classes:
        raise EnsuiError(f"{root}: no class folders inside")
    unknown = set(found) - set(classes)
    if unknown:
        raise EnsuiError(f"{root}: class folders not in the training set: {sorted(unknown)[:5]}")
    paths, labels = [], []
    for index, name in enumerate(classes):
        folder = root / name
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in EXTENSIONS) if folder.is_dir() else []
        paths += files
        labels += [index] * len(files)
    if not paths:
        raise EnsuiError(f"{root}: no images found")
    return paths, labels, classes


class _Files(Dataset):
    def __init__(self, paths, labels, transform):
        self.paths, self.labels, self.transform = paths, labels, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB")), self.labels[i]


def eval_transform(size: int) -> v2.Compose:
    return v2.Compose([v2.PILToTensor(), v2.Resize(round(size * 256 / 224), antialias=True),
                       v2.CenterCrop(size)])


class FolderImages:
    """A labelled image folder read in order as uint8 batches (validation, corruption)."""

    def __init__(self, root: Path, size: int, classes: tuple[str, ...] | None = None,
                 transform=None, workers: int = 2):
        paths, labels, self.classes = list_images(root, classes)
        self.root = root
        self.ids = tuple(str(p.relative_to(root)) for p in paths)
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self._files = _Files(paths, labels, transform or eval_transform(size))
        self.workers = workers

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, n: int) -> "FolderImages":
        """The first n images (file order), e.g. for `validation.limit`."""
        self.ids, self.labels = self.ids[:n], self.labels[:n]
        self._files = _Files(self._files.paths[:n], self._files.labels[:n], self._files.transform)
        return self

    def take(self, index) -> ImageArray:
        """The images at positions `index`, decoded directly (no pass over the folder)."""
        images = torch.stack([self._files[int(i)][0] for i in index])
        return ImageArray(images, self.labels[index], tuple(self.ids[i] for i in index),
                          self.classes)

    def batches(self, batch_size: int):
        loader = DataLoader(self._files, batch_size=batch_size, shuffle=False,
                            num_workers=self.workers)
        start = 0
        for images, labels in loader:
            yield images, labels, start
            start += len(labels)


class FolderTrain:
    """Per-sample Table iii augmentation in worker processes, seeded per epoch."""

    def __init__(self, root: Path, size: int, scale, ratio, hflip: float, workers: int = 2):
        paths, labels, self.classes = list_images(root)
        transform = v2.Compose([
            v2.PILToTensor(),
            v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True),
            v2.RandomHorizontalFlip(hflip),
            v2.ToDtype(torch.float32, scale=True),
        ])
        self._files = _Files(paths, labels, transform)
        self.workers = workers

    def __len__(self) -> int:
        return len(self._files)

    def epoch(self, epoch: int, batch_size: int, seed: int, device: torch.device | None = None):
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        torch.manual_seed(seed * 100_003 + epoch)  # seeds the workers' augmentation draws
        loader = DataLoader(self._files, batch_size=batch_size, shuffle=True, generator=gen,
                            num_workers=self.workers, drop_last=len(self._files) > batch_size,
                            pin_memory=device is not None and device.type == "cuda")
        yield from loader


class FolderViews:
    """Training images for a batch transform such as DINO's multi-crop: each decoded and
    resized to a square of side size * 256 / 224 in worker processes, then
    `transform(batch, generator)` on the batch's device, with the generator derived from
    (seed, epoch, batch). The crops come from that central square, not the whole image:
    one fixed-size tensor per image is what lets the views be drawn for a whole batch."""

    def __init__(self, root: Path, size: int, transform, workers: int = 2):
        paths, labels, self.classes = list_images(root)
        side = round(size * 256 / 224)
        self._files = _Files(paths, labels, v2.Compose([
            v2.PILToTensor(), v2.Resize(side, antialias=True), v2.CenterCrop(side)]))
        self.transform, self.workers = transform, workers

    def __len__(self) -> int:
        return len(self._files)

    def epoch(self, epoch: int, batch_size: int, seed: int, device: torch.device | None = None):
        base = seed * 100_003 + epoch
        loader = DataLoader(self._files, batch_size=batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(base),
                            num_workers=self.workers, drop_last=len(self._files) > batch_size,
                            pin_memory=device is not None and device.type == "cuda")
        for b, (images, labels) in enumerate(loader):
            gen = torch.Generator().manual_seed(base * 10_007 + b)
            if device is not None and device.type == "cuda":
                images = images.to(device, non_blocking=True)
            yield self.transform(images, gen), labels

