"""Progressive shrinking on the embedded digits: learning, the stage's dims, exact resume."""

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ensui.engine import artifacts
from ensui.engine.data.augment import Augment
from ensui.engine.data.embedded import embedded_split
from ensui.engine.data.training import ArrayTrain
from ensui.engine.models.normalize import Normalized
from ensui.engine.nas.elastic_resnet import build_supernet, pre_logits, recalibrate_bn
from ensui.engine.nas.listing import load_listing
from ensui.engine.nas.subnet_config import (
    EXPANSION_CHOICES,
    FULL_EXPANSION,
    RESNET50_LAYERS,
    max_config,
)
from ensui.engine.train import supernet
from ensui.errors import EnsuiError

LISTING_1 = load_listing(Path(__file__).resolve().parents[1] / "data" / "paper" / "listing_1.json")
CPU = torch.device("cpu")
DEPTH_STAGE, _, WIDTH_STAGE, _ = LISTING_1.training.stages


def _listing(*stages):
    """Listing 1 with the given stages, shortened to the epochs given."""
    chosen = tuple(replace(stage, epochs=epochs, epochs_lr=epochs) for stage, epochs in stages)
    return replace(LISTING_1, training=replace(LISTING_1.training, stages=chosen))


def _params(**over):
    # Listing 1's init_lr (2.5e-6) fine-tunes pretrained weights; from scratch needs more.
    return {"seed": 0, "batch_size": 16, "lr": 0.01, "bn_samples": 32, "image_size": 32,
            "optimizer": {"name": "sgd", "momentum": 0.9, "weight_decay": 5e-5}, **over}


def _supernet(seed: int = 0) -> Normalized:
    torch.manual_seed(seed)
    return Normalized(build_supernet("tiny", 10), pre_logits)


@pytest.fixture(scope="module")
def digits():
    train, val = embedded_split(32, 0.2, 0)
    augment = Augment(32, (0.5, 1.0), hflip=0.0)
    return ArrayTrain(train.head(320), augment), ArrayTrain(train.head(48), augment), val.head(120)


def _recording(net: Normalized, monkeypatch) -> list:
    seen, original = [], net.net.set_config

    def record(cfg):
        seen.append(cfg)
        original(cfg)

    monkeypatch.setattr(net.net, "set_config", record)
    return seen


def test_stage_configs_respect_the_stage_dims():
    rng = random.Random(0)
    depth = [supernet.stage_config(rng, DEPTH_STAGE, RESNET50_LAYERS) for _ in range(200)]
    assert all(c.widths == (0, 0, 0, 0) and c.stem_width == 0 for c in depth)
    assert all(set(c.expansions) == {FULL_EXPANSION} for c in depth)
    assert {c.depths[2] for c in depth} == {5, 6}  # depth_indicator 1
    both = [supernet.stage_config(rng, WIDTH_STAGE, RESNET50_LAYERS) for _ in range(200)]
    assert {w for c in both for w in (c.stem_width, *c.widths)} == {0, 1}  # width_indicator 2
    assert {e for c in both for e in c.expansions} == set(EXPANSION_CHOICES)
    assert {c.depths[2] for c in both} == {4, 5, 6}
    smallest = supernet.stage_min_config(WIDTH_STAGE, RESNET50_LAYERS)
    assert smallest.depths == (1, 2, 4, 1) and smallest.widths == (1, 1, 1, 1)
    assert set(smallest.expansions) == {min(EXPANSION_CHOICES)}
    assert supernet.stage_min_config(DEPTH_STAGE, RESNET50_LAYERS).widths == (0, 0, 0, 0)


def test_progressive_shrinking_trains_the_minimal_subnetwork(digits, tmp_path, monkeypatch):
    data, _, val = digits
    listing = _listing((DEPTH_STAGE, 1), (WIDTH_STAGE, 1))
    net = _supernet()
    smallest = supernet.stage_min_config(WIDTH_STAGE, RESNET50_LAYERS)
    bn_images = data.data.images[:64].float() / 255
    before = {k: v.clone() for k, v in net.state_dict().items()}
    untrained, macs, params = supernet.evaluate_subnet(net, smallest, bn_images, val, CPU, 32)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # untouched
    assert 0 < macs and 0 < params < sum(p.numel() for p in net.parameters()) / 2

    seen, epochs = _recording(net, monkeypatch), []
    weights = supernet.train_stage(net, data, val, 0, listing, _params(), tmp_path / "s1", CPU,
                                   on_epoch=epochs.append)
    depth_configs = [c for c in seen if c != max_config()]
    seen.clear()
    weights = supernet.train_stage(net, data, val, listing.training.stages[1], listing,
                                   _params(), tmp_path / "s2", CPU, on_epoch=epochs.append,
                                   init_weights=weights)
    trained, *_ = supernet.evaluate_subnet(net, smallest, bn_images, val, CPU, 32)
    assert trained > untrained + 0.10, (untrained, trained, epochs)

    assert [(e.stage_index, e.epoch) for e in epochs] == [(0, 1), (1, 1)]
    assert all(0 <= e.min_acc <= 1 and 0 <= e.max_acc <= 1 and e.loss > 0 for e in epochs)
    assert all(0 < e.lr < 0.01 for e in epochs)  # cosine over the stage
    # The depth-only stage skipped blocks but never changed a width or an expansion.
    assert 0.75 * len(data) // 16 <= len(depth_configs) <= len(data) // 16  # one per step
    assert all(c.widths == (0, 0, 0, 0) and c.stem_width == 0 for c in depth_configs)
    assert all(set(c.expansions) == {FULL_EXPANSION} for c in depth_configs)
    assert any(c.depths != max_config().depths for c in depth_configs)
    assert any(c.widths != (0, 0, 0, 0) for c in seen)  # the width stage did

    # The stored super-network carries the maximal network's BN statistics.
    stored = _supernet(seed=5)
    stored.load_state_dict(artifacts.load_state(weights))
    assert stored.net.config == max_config()
    again = _supernet(seed=5)
    again.load_state_dict(artifacts.load_state(weights))
    recalibrate_bn(again, supernet.bn_images(data, 32, 16, 0, CPU))
    assert torch.allclose(again.net.bn1.running_mean, stored.net.bn1.running_mean)
    assert torch.allclose(again.net.layer4[2].bn3.running_var, stored.net.layer4[2].bn3.running_var)


def _resumable(tmp_path: Path, name: str, data, val, should_stop=None) -> Path:
    listing = _listing((WIDTH_STAGE, 2))  # reorganizes at its start and adapts BN
    return supernet.train_stage(_supernet(), data, val, 0, listing, _params(bn_samples=16),
                                tmp_path / name, CPU, should_stop=should_stop)


def test_interrupted_stage_resumes_to_identical_weights(digits, tmp_path):
    _, small, val = digits
    val = val.head(32)
    straight = _resumable(tmp_path, "straight", small, val)
    with pytest.raises(supernet.Stopped):
        _resumable(tmp_path, "resumed", small, val, should_stop=iter([False, True]).__next__)
    state = artifacts.load_state(tmp_path / "resumed" / supernet.CHECKPOINT)
    assert (state["epoch"], state["stage"]) == (1, 0)
    assert not (tmp_path / "resumed" / supernet.WEIGHTS).exists()
    resumed = _resumable(tmp_path, "resumed", small, val)
    a, b = artifacts.load_state(straight), artifacts.load_state(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_another_stage_is_refused(digits, tmp_path):
    _, small, val = digits
    artifacts.save_state({"model": {}, "optimizer": {}, "epoch": 1, "stage": 1},
                         tmp_path / supernet.CHECKPOINT)
    with pytest.raises(EnsuiError, match="a checkpoint of stage 1, not 0"):
        supernet.train_stage(_supernet(), small, val, 0, _listing((DEPTH_STAGE, 1)),
                             _params(), tmp_path, CPU)


def test_missing_previous_weights_are_reported(digits, tmp_path):
    _, small, val = digits
    with pytest.raises(EnsuiError, match="previous stage's weights are missing"):
        supernet.train_stage(_supernet(), small, val, 0, _listing((DEPTH_STAGE, 1)), _params(),
                             tmp_path / "run", CPU, init_weights=tmp_path / "absent.pt")


def test_divergence_is_reported(digits, tmp_path):
    _, small, val = digits
    with pytest.raises(supernet.TrainingDiverged, match="loss became .* stage 1"):
        supernet.train_stage(_supernet(), small, val, 0, _listing((DEPTH_STAGE, 1)),
                             _params(lr=1e12), tmp_path, CPU)


def test_only_super_networks_are_trained(digits, tmp_path):
    _, small, val = digits
    with pytest.raises(TypeError, match="ElasticResNet"):
        supernet.train_stage(torch.nn.Linear(2, 2), small, val, 0, _listing((DEPTH_STAGE, 1)),
                             _params(), tmp_path, CPU)


def test_learning_rate_follows_a_cosine_over_epochs_lr():
    stage = replace(DEPTH_STAGE, epochs=4, epochs_lr=2)
    lrs = [supernet._stage_lr(stage, 1.0, epoch, step, 10) for epoch in range(4)
           for step in range(10)]
    assert lrs[0] == 1.0 and lrs[10] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[20:] == [0.0] * 20  # held at zero after epochs_lr
