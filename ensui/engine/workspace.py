"""The data an experiment works on, loaded once and shared by its jobs."""

from __future__ import annotations

from functools import cached_property

from ensui.engine.data.augment import Augment
from ensui.engine.data.embedded import embedded_split
from ensui.engine.data.folders import FolderImages, FolderTrain, FolderViews
from ensui.engine.data.multicrop import MultiCrop
from ensui.engine.data.training import ArrayTrain
from ensui.engine.data.validation import (CifarC, GeneratedParts, ImageNetC, build_set,
                                          resolve_constants)
from ensui.engine.spec import Spec
from ensui.home import Home


class Workspace:
    def __init__(self, spec: Spec, home: Home):
        self.spec, self.home = spec, home
        self._sets: dict[str, object] = {}

    @property
    def size(self) -> int:
        return self.spec.dataset.size

    @cached_property
    def _embedded(self):
        ds = self.spec.dataset
        return embedded_split(self.size, ds.val_fraction, ds.split_seed)

    def train_data(self, augment: dict):
        aug = Augment(self.size, tuple(augment["scale"]), tuple(augment["ratio"]), augment["hflip"])
        if self.spec.dataset.kind == "embedded":
            return ArrayTrain(self._embedded[0], aug)
        return FolderTrain(self.spec.dataset.path / "train", self.size, aug.scale, aug.ratio,
                           aug.hflip)

    def multicrop_data(self, p: dict):
        """Multi-crop views of the training images for a DINO backbone job's params."""
        views = MultiCrop(self.size, p["local_size"], tuple(p["global_scale"]),
                          tuple(p["local_scale"]), p["n_local"], hflip=p["hflip"],
                          sigma=tuple(p["blur_sigma"]))
        if self.spec.dataset.kind == "embedded":
            return ArrayTrain(self._embedded[0], views)
        return FolderViews(self.spec.dataset.path / "train", self.size, views)

    def knn_data(self):
        """(train, validation) images in memory for DINO's k-NN monitor; None for folders,
        where it would mean reading the whole training set every epoch."""
        if self.spec.dataset.kind != "embedded":
            return None
        return self._embedded[0], self.clean

    @cached_property
    def clean(self):
        """The clean validation set, cut to `validation.limit` when given."""
        if self.spec.dataset.kind == "embedded":
            clean = self._embedded[1]
        else:
            root = self.spec.dataset.path
            classes = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir()))
            clean = FolderImages(root / "val", self.size, classes)
        limit = self.spec.validation.limit
        return clean.head(limit) if limit and limit < len(clean) else clean

    @cached_property
    def _parts(self):
        val = self.spec.validation
        if val.source == "imagenet_c":
            return ImageNetC(val.path, self.size, self.clean.classes)
        if val.source == "cifar_c":
            return CifarC(val.path)
        constants = resolve_constants(val.constants, self.size)
        identity = {"dataset": self.spec.dataset.model_dump(mode="json"), "limit": val.limit,
                    "constants": constants, "seed": val.seed}
        return GeneratedParts(self.clean, self.home.cache / "valsets", constants, val.seed, identity)

    def valset(self, name: str):
        if name not in self._sets:
            self._sets[name] = build_set(name, self.spec.validation.severities, self.clean,
                                         self._parts)
        return self._sets[name]
