"""The ncl recipe as jobs: a team job per λ, member jobs that take its weights, the λ
sweep rows (drops, the independently trained teams beside them), their record in the
catalog, and a headless run in which λ = 0 gives the independent members' weights."""

import json
import sqlite3

import pytest
import torch

from ensui import render
from ensui.catalog import Catalog
from ensui.engine import artifacts, sweep
from ensui.engine.plan import make_plan
from ensui.engine.report import sweep_summary
from ensui.engine.runtime.work import intact, team_metrics
from ensui.engine.spec import Spec
from ensui.engine.train.ncl import TeamEpoch
from ensui.engine.train.supervised import WEIGHTS
from ensui.home import Home


def _spec(joint: list[dict], members=("SqueezeNet",), **analysis) -> Spec:
    return Spec.model_validate({
        "name": "j", "scale": "tiny", "members": list(members), "joint": joint,
        "validation": {"sets": ["clean", "noise"]},
        "analysis": {"attribution": {"target": "ensemble"}, **analysis}})


def test_a_team_job_per_lambda_and_member_jobs_that_take_its_weights():
    team = {"name": "t", "models": ["MNASNET_1", {"model": "SqueezeNet", "seed": 9}],
            "loss": "ncl", "lambdas": [0, 0.5]}
    plan = make_plan(_spec([team]), Catalog("catalog.db"))
    teams = plan.of_kind("team")
    assert [j.member for j in teams] == ["t[0]", "t[0.5]"]
    assert [j.params["loss"] for j in teams] == [
        {"variant": "ncl", "lam": lam, "consensus": "average"} for lam in (0.0, 0.5)]
    first = teams[0].params
    # Table i: both 100 epochs; batches 32 and 128: the team takes the smallest batch;
    # each member keeps its own learning rate and weight decay
    assert first["epochs"] == 100 and first["batch_size"] == 32
    assert [m["optimizer"]["lr"] for m in first["members"]] == [0.1, 0.01]
    assert [m["seed"] for m in first["members"]] == [0, 9] and first["seed"] == 0
    members = [j for j in plan.of_kind("train") if j.params["recipe"] == "ncl_member"]
    assert [j.member for j in members] == ["t[0]/MNASNET_1", "t[0]/SqueezeNet",
                                           "t[0.5]/MNASNET_1", "t[0.5]/SqueezeNet"]
    assert [(j.depends, j.params["index"]) for j in members] == [
        (teams[0].key, 0), (teams[0].key, 1), (teams[1].key, 0), (teams[1].key, 1)]
    assert members[1].params["seed"] == 9  # builds the model the team trained
    evals = {(j.member, j.params["val_set"]): j for j in plan.of_kind("evaluate")}
    assert evals[("t[0.5]/SqueezeNet", "noise")].depends == members[3].key
    # the ensemble an attribution targets: the member's own team, not the whole spec
    attribute = {(j.member, j.params["val_set"]): j for j in plan.of_kind("attribute")}
    target = attribute[("t[0]/MNASNET_1", "clean")].params["target_from"]
    assert target == [evals[("t[0]/MNASNET_1", "clean")].key,
                      evals[("t[0]/SqueezeNet", "clean")].key]
    assert attribute[("SqueezeNet", "clean")].params["target_from"] == [
        evals[("SqueezeNet", "clean")].key]


def test_team_settings_from_the_spec_and_member_lr():
    team = {"name": "t", "models": [{"model": "MNASNET_1", "lr": 0.01}, "SqueezeNet"],
            "epochs": 3, "batch_size": 32, "seed": 4, "lambdas": [1]}
    params = make_plan(_spec([team]), Catalog("catalog.db")).of_kind("team")[0].params
    assert (params["epochs"], params["batch_size"], params["seed"]) == (3, 32, 4)
    assert params["members"][0]["optimizer"]["lr"] == 0.01
    assert [m["seed"] for m in params["members"]] == [4, 4]
    assert params["loss"]["variant"] == "balanced"


def test_same_team_asked_twice_is_one_job_and_a_different_lambda_is_not():
    one = {"name": "a", "models": ["MNASNET_1", "SqueezeNet"], "lambdas": [0.5]}
    two = {**one, "name": "b", "lambdas": [0.5, 1]}
    teams = make_plan(_spec([one, two]), Catalog("catalog.db")).of_kind("team")
    assert teams[0].key == teams[1].key != teams[2].key


def _row(team: str, set_name: str, accuracy: float, size: int = 2, **more) -> dict:
    return {"team": team, "size": size, "consensus": "average", "accuracy": accuracy,
            "set": set_name, "vs_mean": 0.01, **more}


def test_sweep_rows_join_the_independent_teams_of_the_same_size_with_drops():
    spec = _spec([{"name": "t", "models": ["MNASNET_1", "SqueezeNet"], "lambdas": [0, 1]}],
                 members=("SqueezeNet", "MNASNET_1", "ResNext50_32.2"))
    joint = spec.joint_members()
    accuracy = {("t[0]", "clean"): 0.9, ("t[0]", "noise"): 0.6,
                ("t[1]", "clean"): 0.8, ("t[1]", "noise"): 0.7}

    def score(labels, set_name):
        team = labels[0].split("/")[0]
        return [{"team": tuple(labels), "size": 2, "consensus": "average",
                 "accuracy": accuracy[(team, set_name)], "gncl_diversity": 0.1}]

    separate = {"clean": [_row(("A", "B"), "clean", 0.5), _row(("A", "B", "C"), "clean", 0.9, 3)],
                "noise": [_row(("A", "B"), "noise", 0.2), _row(("A", "B", "C"), "noise", 0.4, 3)]}
    rows = sweep.sweep_rows(spec, joint, separate, score)
    got = [(r["team"], r["loss"], r["lam"], r["set"], r["drop"]) for r in rows]
    assert got == [("t[0]", "balanced", 0.0, "clean", None),
                   ("t[0]", "balanced", 0.0, "noise", pytest.approx(0.3)),
                   ("t[1]", "balanced", 1.0, "clean", None),
                   ("t[1]", "balanced", 1.0, "noise", pytest.approx(0.1)),
                   ("A + B", "separate", None, "clean", None),
                   ("A + B", "separate", None, "noise", pytest.approx(0.3))]
    assert rows[0]["members"] == ["t[0]/MNASNET_1", "t[0]/SqueezeNet"]
    summary = sweep_summary(rows, "average", "vs_mean")
    assert summary[5]["gain"] == 0.01 and summary[0]["gncl_diversity"] == 0.1
    assert summary[4]["attribution_diversity"] is None
    assert render.sweep_table(summary, "vs_mean").row_count == 6
    # a second joint team of the same size repeats the separate rows in the data, under
    # its own group; the table shows each independently trained team once, sets together
    other = [{**r, "group": "u", "team": r["team"].replace("t[", "u[")} for r in summary]
    shown = render.sweep_display(summary + other)
    assert [(r["team"], r["set"]) for r in shown] == [
        ("t[0]", "clean"), ("t[0]", "noise"), ("t[1]", "clean"), ("t[1]", "noise"),
        ("u[0]", "clean"), ("u[0]", "noise"), ("u[1]", "clean"), ("u[1]", "noise"),
        ("A + B", "clean"), ("A + B", "noise")]
    assert render.sweep_table(summary + other, "vs_mean").row_count == 10


def test_catalog_keeps_the_sweep(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    row = {**_row("t[0.5]", "noise", 0.7), "group": "t", "loss": "ncl", "lam": 0.5,
           "members": ["t[0.5]/a", "t[0.5]/b"], "drop": 0.2, "nll": 1.0,
           "average_accuracy": 0.6, "vs_best": 0.0, "eir": 0.1, "nll_gain": 0.2,
           "label_disagreement": 0.3, "gncl_diversity": 0.05}
    for _ in range(2):  # a re-run replaces, never duplicates
        catalog.record_study("e1", {}, [], {}, [], [], [], [row])
    got = catalog.sweep_results("e1")
    assert len(got) == 1
    assert {k: got[0][k] for k in ("group", "team", "val_set", "lam", "loss", "drop",
                                   "label_disagreement", "gncl_diversity")} == {
        "group": "t", "team": "t[0.5]", "val_set": "noise", "lam": 0.5, "loss": "ncl",
        "drop": 0.2, "label_disagreement": 0.3, "gncl_diversity": 0.05}
    assert catalog.experiment_tables("e1")["sweep"] == got


def test_team_epoch_metrics_and_intact_team_artifacts(tmp_path):
    e = TeamEpoch(2, 1.5, 0.1, (0.7, 0.8), (0.6, 0.9), 0.95, 0.2, (0.1, 0.01), 3.0)
    m = team_metrics(e, ["a", "b"])
    assert (m.epoch, m.loss, m.val_acc, m.lr, m.train_acc) == (2, 1.5, 0.95, 0.1, None)
    assert m.extra == {"penalty": 0.1, "disagreement": 0.2, "acc:a": 0.6, "acc:b": 0.9}
    home = Home(tmp_path)
    params = {"members": [{}, {}]}
    artifacts.save_state({"w": torch.ones(1)}, home.runs / "k" / "member_0.pt")
    assert not intact(home, "k", "team", params)
    artifacts.save_state({"w": torch.ones(1)}, home.runs / "k" / "member_1.pt")
    assert intact(home, "k", "team", params)


@pytest.mark.slow
def test_joint_teams_run_as_jobs_and_lambda_0_is_independent_training(mixed_run):
    """Through `ensui headless` (conftest.MIXED): a balanced MNASNet + SqueezeNet pair at
    λ 0 and 1 beside the same models trained alone, with the same seeds."""
    proc, home = mixed_run
    assert "bal[1] epoch 1/1" in proc.stderr and "ensemble" in proc.stderr
    conn = sqlite3.connect(home / "catalog.db")
    pair = ("MNASNET_1", "SqueezeNet")
    weights = {m: torch.load(home / "runs" / key / WEIGHTS, weights_only=True)
               for m, key in conn.execute("SELECT member, key FROM jobs WHERE kind = 'train'")
               if m in pair or m.startswith("bal[")}
    for name in pair:  # λ = 0: the independent weights, exactly
        alone, joint = weights[name], weights[f"bal[0]/{name}"]
        assert alone.keys() == joint.keys()
        assert all(torch.equal(alone[k], joint[k]) for k in alone), name
    assert not all(torch.equal(weights["SqueezeNet"][k], weights["bal[1]/SqueezeNet"][k])
                   for k in weights["SqueezeNet"])
    rows = {(r["team"], r["set"]): r for r in json.loads(proc.stdout)["study"]["sweep"]}
    assert set(rows) >= {(t, s) for t in ("bal[0]", "bal[1]", "MNASNET_1 + SqueezeNet")
                         for s in ("clean", "noise")}
    assert {r["loss"] for r in rows.values()} == {"balanced", "separate"}
    assert all(len(r["team"].split(" + ")) == 2 for r in rows.values() if r["lam"] is None)
    for set_name in ("clean", "noise"):  # same weights, same outputs, same scores
        zero, alone = rows[("bal[0]", set_name)], rows[("MNASNET_1 + SqueezeNet", set_name)]
        for key in ("accuracy", "gain", "drop", "label_disagreement", "gncl_diversity",
                    "attribution_diversity", "activation_diversity"):
            assert zero[key] == pytest.approx(alone[key]), key
    assert all(r["gncl_diversity"] >= 0 and r["activation_diversity"] is not None
               for r in rows.values())
    epochs = conn.execute("SELECT e.extra FROM epochs e JOIN jobs j ON j.key = e.job_key "
                          "WHERE j.kind = 'team'").fetchall()
    assert len(epochs) == 2 and {"disagreement", "acc:MNASNET_1"} <= set(json.loads(epochs[0][0]))
