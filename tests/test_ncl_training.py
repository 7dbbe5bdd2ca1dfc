"""Joint (NCL) training of a team on the embedded digits: λ = 0 is independent training
bit for bit, exact resume, diversity grows with λ, and the per-epoch metrics."""

import math

import pytest
import torch

from ensui import paper
from ensui.engine import artifacts
from ensui.engine.data.augment import Augment
from ensui.engine.data.embedded import embedded_split
from ensui.engine.data.training import ArrayTrain
from ensui.engine.diversity.prediction import counts, pairwise_matrices
from ensui.engine.models.factory import build_model
from ensui.engine.predict import predict
from ensui.engine.train import ncl, supervised
from ensui.engine.train.schedule import scale_schedule

CPU = torch.device("cpu")
EPOCHS = 2
ROWS = ("SqueezeNet", "MNASNET_1")  # both have dropout; different optimizers' lrs
INIT_SEEDS = (1, 2)


def _row(row_id: str) -> dict:
    return next(r for r in paper.table_i() if r["id"] == row_id)


def _member(row_id: str, seed: int = 3) -> dict:
    row = _row(row_id)
    sched = scale_schedule(row["scheduler"], EPOCHS, row["epochs"], "proportional")
    return {"optimizer": row["optimizer"], "scheduler": sched, "seed": seed}


def _params(variant="balanced", lam=0.0, rows=ROWS, **over) -> dict:
    return {"epochs": EPOCHS, "batch_size": 64, "seed": 3, "image_size": 32,
            "members": [_member(r) for r in rows],
            "loss": {"variant": variant, "lam": lam, "consensus": "average"}, **over}


def _models(rows=ROWS, seeds=INIT_SEEDS) -> list:
    return [build_model(_row(r)["arch"], "tiny", 10, 32, seed=s) for r, s in zip(rows, seeds)]


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def digits():
    train, val = embedded_split(32, 0.2, 0)
    return ArrayTrain(train.head(512), Augment(32, (0.5, 1.0), hflip=0.0)), val


@pytest.fixture(scope="module")
def team_run(digits, tmp_path_factory):
    """run(variant) -> (weights files, TeamEpochs) of an uninterrupted λ = 0 team, cached."""
    done = {}

    def run(variant: str):
        if variant not in done:
            seen = []
            run_dir = tmp_path_factory.mktemp(f"team-{variant}")
            paths = ncl.train_team(_models(), *digits, _params(variant), run_dir, CPU,
                                   on_epoch=seen.append)
            done[variant] = paths, seen
        return done[variant]

    return run


@pytest.fixture(scope="module")
def alone(digits, tmp_path_factory):
    """Each member trained by itself with the supervised recipe, same seeds and data."""
    states = []
    for row, model in zip(ROWS, _models()):
        params = {**_params(), **_member(row)}
        weights = supervised.train(model, *digits, params, tmp_path_factory.mktemp(row), CPU)
        states.append(artifacts.load_state(weights))
    return states


def test_member_rng_streams_do_not_interleave():
    """Interleaved draws of two members equal each one's draws alone after supervised's
    per-epoch seeding; the global RNG is left as it was."""
    expected = []
    for seed in (3, 8):
        torch.manual_seed(seed * 100_003 + 1)
        expected.append([torch.rand(4) for _ in range(3)])
    torch.manual_seed(0)
    before = torch.get_rng_state()
    rngs = [ncl.MemberRng(seed, 1, CPU) for seed in (3, 8)]
    drawn = [[], []]
    for _ in range(3):
        for i, rng in enumerate(rngs):
            with rng.active():
                drawn[i].append(torch.rand(4))
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a, b) for i in range(2) for a, b in zip(drawn[i], expected[i]))


@pytest.mark.parametrize("variant", ["balanced", "ncl"])
def test_lambda_zero_reproduces_independent_training(team_run, alone, variant):
    paths, _ = team_run(variant)
    assert len(paths) == 2 and all(artifacts.is_intact(p) for p in paths)
    for path, solo in zip(paths, alone):
        assert _equal_states(artifacts.load_state(path), solo)


def test_interrupted_team_resumes_to_identical_weights(digits, team_run, tmp_path):
    straight, _ = team_run("balanced")
    with pytest.raises(ncl.Stopped):
        ncl.train_team(_models(), *digits, _params(), tmp_path, CPU,
                       should_stop=iter([False, True]).__next__)
    assert artifacts.load_state(tmp_path / ncl.CHECKPOINT)["epoch"] == 1
    assert not ncl.member_weights(tmp_path, 0).exists()
    seen = []
    resumed = ncl.train_team(_models(), *digits, _params(), tmp_path, CPU, on_epoch=seen.append)
    assert [e.epoch for e in seen] == [2]
    for a, b in zip(straight, resumed):
        assert _equal_states(artifacts.load_state(a), artifacts.load_state(b))


def test_checkpoint_of_another_team_is_refused(digits, team_run, tmp_path):
    paths, _ = team_run("balanced")
    ckpt = paths[0].parent / ncl.CHECKPOINT
    for suffix in ("", ".sha256"):
        (tmp_path / (ncl.CHECKPOINT + suffix)).write_bytes((ckpt.parent / (ckpt.name + suffix))
                                                           .read_bytes())
    with pytest.raises(ValueError, match="holds 2 members"):
        ncl.train_team(_models(ROWS[:1]), *digits, _params(rows=ROWS[:1]), tmp_path, CPU)


def test_epoch_metrics_are_finite_and_match_a_direct_computation(digits, team_run):
    paths, seen = team_run("balanced")
    assert [e.epoch for e in seen] == [1, 2]
    for e in seen:
        values = [e.loss, e.penalty, e.ensemble_val_acc, e.disagreement, e.seconds,
                  *e.member_ce, *e.member_val_acc, *e.lrs]
        assert all(math.isfinite(v) for v in values) and len(e.member_ce) == len(e.lrs) == 2
        assert e.loss == pytest.approx(sum(e.member_ce), rel=1e-5)  # λ = 0: Σ CE
    val = digits[1]
    models = _models()
    for model, path in zip(models, paths):
        model.load_state_dict(artifacts.load_state(path))
    logits = torch.stack([predict(m, val, 100, CPU, 32) for m in models])
    mean_prob = torch.softmax(logits, -1).mean(0)
    last = seen[-1]
    assert last.ensemble_val_acc == pytest.approx((mean_prob.argmax(1) == val.labels).float().mean().item())
    for acc, member_logits in zip(last.member_val_acc, logits):
        assert acc == pytest.approx((member_logits.argmax(1) == val.labels).float().mean().item())
    predictions = logits.argmax(-1).numpy()
    matrix = pairwise_matrices(counts(predictions, val.labels.numpy(), 10))["label_disagreement"]
    assert last.disagreement == pytest.approx(matrix[0, 1]) and 0 <= last.disagreement <= 1


TREND_LAMS = (0.0, 2.0, 4.0)


def test_ncl_disagreement_rises_with_lambda(tmp_path):
    """Classic NCL: a larger λ gives members that disagree more on val, while the team
    still learns. Two SqueezeNets, same seeds, only λ differs; 4 epochs of the whole
    train split (members reach 0.6–0.75 accuracy at λ = 0, so disagreement starts well
    below its ceiling). λ ≤ 1 is within seed noise here, so the sweep steps by 2."""
    train, val = embedded_split(32, 0.2, 0)
    data = ArrayTrain(train, Augment(32, (0.8, 1.0), hflip=0.0))
    member = {"optimizer": {"name": "adamw", "lr": 1e-3}, "scheduler": {"name": "cosine"}}
    arch = _row("SqueezeNet")["arch"]
    last = []
    for lam in TREND_LAMS:
        seen = []
        params = {"epochs": 4, "batch_size": 32, "seed": 3, "image_size": 32,
                  "members": [{**member, "seed": 10}, {**member, "seed": 11}],
                  "loss": {"variant": "ncl", "lam": lam}}
        models = [build_model(arch, "tiny", 10, 32, seed=s) for s in (0, 1)]
        ncl.train_team(models, data, val, params, tmp_path / str(lam), CPU, on_epoch=seen.append)
        last.append(seen[-1])
    disagreement = [e.disagreement for e in last]
    assert disagreement[-1] - disagreement[0] > 0.3, disagreement
    assert all(b >= a - 0.02 for a, b in zip(disagreement, disagreement[1:])), disagreement
    assert [e.penalty for e in last] == sorted(e.penalty for e in last)
    assert min(e.ensemble_val_acc for e in last) > 0.6, last


def test_divergence_is_reported(digits, tmp_path):
    params = _params(rows=ROWS[:1], epochs=1)
    params["members"][0]["optimizer"] = {"name": "sgd", "lr": 1e12, "momentum": 0.9}
    with pytest.raises(ncl.TrainingDiverged, match="loss became"):
        ncl.train_team(_models(ROWS[:1]), *digits, params, tmp_path, CPU)
