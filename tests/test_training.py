"""Real tiny training on the embedded digits: learning, determinism, exact resume."""

import pytest
import torch

from ensui.engine import artifacts
from ensui.engine.data.augment import Augment
from ensui.engine.data.embedded import embedded_split
from ensui.engine.data.training import ArrayTrain
from ensui.engine.models.factory import build_model
from ensui.engine.train import supervised

ARCH = {"family": "squeezenet", "version": "1.1", "dropout": 0.5}


def _params(epochs=2, **over):
    return {"epochs": epochs, "batch_size": 64, "seed": 3, "image_size": 32,
            "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 2e-4},
            "scheduler": {"name": "step", "gamma": 0.5, "step_epochs": 0.5}, **over}


@pytest.fixture(scope="module")
def digits():
    train, val = embedded_split(32, 0.2, 0)
    return ArrayTrain(train, Augment(32, (0.5, 1.0), hflip=0.0)), val


def _model():
    return build_model(ARCH, "tiny", 10, 32, seed=1)


def test_embedded_split_is_stratified_and_fixed():
    train, val = embedded_split(32, 0.2, 0)
    again, _ = embedded_split(32, 0.2, 0)
    assert len(train) + len(val) == 1797 and train.ids == again.ids
    assert not set(train.ids) & set(val.ids)
    per_class = torch.bincount(val.labels, minlength=10)
    assert per_class.min() >= 34 and per_class.max() <= 38
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, 32, 32)


def test_training_learns_and_records_each_epoch(digits, tmp_path):
    data, val = digits
    seen = []
    params = _params(epochs=3, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9},
                     scheduler={"name": "step", "gamma": 0.5, "step_epochs": 2,
                                "warmup_epochs": 1})
    mnasnet = build_model({"family": "mnasnet", "alpha": 1.0, "dropout": 0.2}, "tiny", 10, 32, seed=0)
    weights = supervised.train(mnasnet, data, val, params, tmp_path, torch.device("cpu"),
                               on_epoch=seen.append)
    assert [m.epoch for m in seen] == [1, 2, 3]
    assert seen[-1].val_acc > 0.35, seen  # chance is 0.1
    assert seen[-1].loss < seen[0].loss - 0.3
    assert seen[0].lr == pytest.approx(0.1)  # warmed up by the end of epoch 1
    assert seen[-1].lr == pytest.approx(0.1 * 0.5)  # halved after two epochs
    assert artifacts.is_intact(weights)


def test_interrupted_run_resumes_to_identical_weights(digits, tmp_path):
    data, val = digits
    straight = tmp_path / "straight"
    supervised.train(_model(), data, val, _params(), straight, torch.device("cpu"))

    resumed = tmp_path / "resumed"
    calls = []

    def stop_after_first():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(supervised.Stopped):
        supervised.train(_model(), data, val, _params(), resumed, torch.device("cpu"),
                         should_stop=stop_after_first)
    assert artifacts.load_state(resumed / supervised.CHECKPOINT)["epoch"] == 1
    assert not (resumed / supervised.WEIGHTS).exists()
    supervised.train(_model(), data, val, _params(), resumed, torch.device("cpu"))

    a = artifacts.load_state(straight / supervised.WEIGHTS)
    b = artifacts.load_state(resumed / supervised.WEIGHTS)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupted_checkpoint_is_not_used(digits, tmp_path):
    data, val = digits
    with pytest.raises(supervised.Stopped):
        supervised.train(_model(), data, val, _params(), tmp_path, torch.device("cpu"),
                         should_stop=iter([False, True]).__next__)
    ckpt = tmp_path / supervised.CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    seen = []
    supervised.train(_model(), data, val, _params(), tmp_path, torch.device("cpu"),
                     on_epoch=seen.append)
    assert [m.epoch for m in seen] == [1, 2]  # started over instead of loading garbage


def test_divergence_is_reported(digits, tmp_path):
    data, val = digits
    with pytest.raises(supervised.TrainingDiverged, match="loss became"):
        supervised.train(_model(), data, val, _params(epochs=1, optimizer={
            "name": "sgd", "lr": 1e12, "momentum": 0.9}), tmp_path, torch.device("cpu"))


def test_checkpoint_write_errors_reach_the_caller(digits, tmp_path, monkeypatch):
    data, val = digits

    def disk_full(obj, path):
        raise OSError("No space left on device")

    monkeypatch.setattr(supervised.artifacts, "save_state", disk_full)
    with pytest.raises(OSError, match="No space left"):
        supervised.train(_model(), data, val, _params(epochs=1), tmp_path, torch.device("cpu"))


def test_mnasnet_resumes_from_its_checkpoint(digits, tmp_path):
    """torchvision's MNASNet refuses a state_dict that lost its version metadata."""
    data, val = digits
    arch = {"family": "mnasnet", "alpha": 1.0, "dropout": 0.2}
    with pytest.raises(supervised.Stopped):
        supervised.train(build_model(arch, "tiny", 10, 32, seed=0), data, val, _params(),
                         tmp_path, torch.device("cpu"), should_stop=iter([False, True]).__next__)
    seen = []
    supervised.train(build_model(arch, "tiny", 10, 32, seed=0), data, val, _params(), tmp_path,
                     torch.device("cpu"), on_epoch=seen.append)
    assert [m.epoch for m in seen] == [2]  # resumed after epoch 1
