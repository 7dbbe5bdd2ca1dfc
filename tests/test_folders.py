"""Image folders in the ImageNet layout, and released ImageNet-C, through `ensui headless`."""

import json
import textwrap

import numpy as np
import pytest
from PIL import Image

from conftest import write


def _save_digits(root, split, per_class, offset=0, size=(36, 44)):
    from sklearn.datasets import load_digits

    digits = load_digits()
    for cls in (0, 1, 2):
        folder = root / split / f"class{cls}"
        folder.mkdir(parents=True, exist_ok=True)
        picks = np.flatnonzero(digits.target == cls)[offset:offset + per_class]
        for i in picks:
            grey = (digits.images[i] / 16 * 255).astype(np.uint8)
            Image.fromarray(grey).resize(size).convert("RGB").save(folder / f"{i}.png")


@pytest.fixture
def folder_dataset(tmp_path):
    root = tmp_path / "imagenet"
    _save_digits(root, "train", 20)
    _save_digits(root, "val", 5, offset=40)
    return root


IN_PROCESS = ("--workers", "0")  # the folders are under test here, not the workers


def test_folder_dataset_trains_and_evaluates(cli, tmp_path, folder_dataset):
    spec = write(tmp_path, textwrap.dedent(f"""\
        name: folders
        dataset: {{kind: folder, path: {folder_dataset}, image_size: 32}}
        training: {{epochs: 1, batch_size: 16}}
        validation: {{sets: [clean, pixelate], severities: [2], limit: 12}}
        members: [SqueezeNet]
        """))
    code, out, err = cli("headless", "--spec", spec, "--json", *IN_PROCESS)
    assert code == 0, err
    member = json.loads(out)["members"][0]
    assert member["status"] == "done"
    from ensui.catalog import Catalog

    catalog = Catalog(tmp_path / "ensui-home" / "catalog.db")
    sizes = {r["val_set"]: r["n"] for r in catalog.db["results"].rows}
    assert sizes == {"clean": 12, "pixelate": 12}  # 15 images, limited to the first 12
    train = next(catalog.db["jobs"].rows_where("kind = 'train'"))
    assert json.loads(train["params"])["num_classes"] == 3


def test_released_imagenet_c_is_read_not_generated(cli, tmp_path, folder_dataset):
    released = tmp_path / "imagenet-c"
    for severity in (1, 2):
        _save_digits(released / "fog", str(severity), 4, offset=60, size=(32, 32))
    spec = write(tmp_path, textwrap.dedent(f"""\
        name: released
        dataset: {{kind: folder, path: {folder_dataset}, image_size: 32}}
        training: {{epochs: 1, batch_size: 16}}
        validation: {{sets: [fog], severities: [1, 2], source: imagenet_c, path: {released}}}
        members: [SqueezeNet]
        """))
    code, out, err = cli("headless", "--spec", spec, "--json", *IN_PROCESS)
    assert code == 0, err
    assert json.loads(out)["members"][0]["accuracy"]["fog"] is not None
    assert not (tmp_path / "ensui-home" / "cache").exists()  # nothing generated


def test_missing_release_folder_fails_the_job_not_the_run(cli, tmp_path, folder_dataset):
    released = tmp_path / "imagenet-c"
    released.mkdir()
    spec = write(tmp_path, textwrap.dedent(f"""\
        name: partial
        dataset: {{kind: folder, path: {folder_dataset}, image_size: 32}}
        training: {{epochs: 1, batch_size: 16}}
        validation: {{sets: [clean, snow], severities: [1], source: imagenet_c, path: {released}}}
        members: [SqueezeNet]
        """))
    code, out, err = cli("headless", "--spec", spec, "--json", *IN_PROCESS)
    assert code == 1
    member = json.loads(out)["members"][0]
    assert member["accuracy"]["clean"] is not None and member["accuracy"]["snow"] is None
    assert "ImageNet-C folder missing" in " ".join(member["errors"])


def test_folder_views_give_dino_multi_crop_batches(folder_dataset):
    """DINO's views from image folders: each image decoded into a central square, then
    the batch's views drawn from a generator of (seed, epoch, batch): reproducible."""
    import torch

    from ensui.engine.data.folders import FolderViews
    from ensui.engine.data.multicrop import MultiCrop

    views = MultiCrop(32, 16, (0.4, 1.0), (0.05, 0.4), n_local=2)
    data = FolderViews(folder_dataset / "train", 32, views, workers=0)
    assert len(data) == 60 and data.classes == ("class0", "class1", "class2")
    first = list(data.epoch(0, 16, seed=3))
    assert len(first) == 3  # 60 images, batches of 16, the short last one dropped
    crops, labels = first[0]
    assert [tuple(c.shape) for c in crops] == [(16, 3, 32, 32)] * 2 + [(16, 3, 16, 16)] * 2
    assert all(0 <= c.min() and c.max() <= 1 for c in crops) and labels.shape == (16,)
    again = list(data.epoch(0, 16, seed=3))
    assert all(torch.equal(a, b) for (x, _), (y, _) in zip(first, again, strict=True)
               for a, b in zip(x, y, strict=True))
    other = next(iter(data.epoch(1, 16, seed=3)))[0][0]
    assert not torch.equal(other, crops[0])
