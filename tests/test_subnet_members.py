"""BootstrapNAS sub-networks as members: the plan (one chain of stage jobs shared by every
sub-network member, a search after it), the factory's standalone sub-network, saving a
front point as a catalog sub-network, and a headless run through all of it."""

import json
import sqlite3

import pytest
import torch

from ensui import paper
from ensui.catalog import Catalog
from ensui.engine.models.factory import build_model, count_parameters
from ensui.engine.models.resnet import subnet_config
from ensui.engine.nas.elastic_resnet import build_supernet, extract
from ensui.engine.nas.subnet_config import parse_table_ii
from ensui.engine.plan import make_plan
from ensui.engine.plan_supernet import stage_listing
from ensui.engine.spec import Spec
from ensui.engine.train.supervised import WEIGHTS
from ensui.errors import EnsuiError


def _plan(members, **supernet):
    spec = Spec.model_validate({"name": "n", "scale": "tiny", "members": members,
                                "validation": {"sets": ["clean"]},
                                "analysis": {"enabled": False},
                                "training": {"supernet": supernet}})
    return make_plan(spec, Catalog("catalog.db"))


def test_subnet_members_share_one_chain_of_stage_jobs_and_a_search():
    plan = _plan(["B_0", "nB_2", "bootstrapNAS-B.0", "SqueezeNet"])
    stages = plan.of_kind("supernet")
    # tiny: 4 warm-up epochs of the maximal network, then Listing 1's four stages shrunk
    # from 25 + 40 + 50 + 50 epochs to 7 in all
    assert [j.params["epochs"] for j in stages] == [4, 1, 2, 2, 2]
    assert [j.depends for j in stages] == [None, *[j.key for j in stages[:-1]]]
    assert [j.params["init_key"] for j in stages] == [None, *[j.key for j in stages[:-1]]]
    listing = stage_listing(stages[0].params)
    assert listing.training.stages[0].train_dims == ()  # the warm-up: no elastic dim
    assert listing.training.stages[-1].width_indicator == 3
    (search,) = plan.of_kind("search")
    assert search.depends == stages[-1].key
    assert (search.params["num_evals"], search.params["population"]) == (60, 12)
    members = {j.member: j for j in plan.of_kind("train")}
    for name in ("B_0", "nB_2", "bootstrapNAS-B.0"):
        assert members[name].params["recipe"] == "subnet"
        assert members[name].depends == stages[-1].key == members[name].params["supernet_key"]
    assert members["SqueezeNet"].params["recipe"] == "supervised"
    # Table i's bootstrapNAS-B.0 is Table ii's B_0
    assert (subnet_config(members["bootstrapNAS-B.0"].params["arch"])
            == subnet_config(members["B_0"].params["arch"]))
    assert subnet_config(members["nB_2"].params["arch"]) != subnet_config(members["B_0"].params["arch"])


def test_supernet_settings_from_the_spec():
    plan = _plan(["B_0"], total_epochs=3, warmup_epochs=0, lr=0.1, batch_size=16,
                 bn_samples=40, search=False, seed=5)
    stages = plan.of_kind("supernet")
    assert [j.params["epochs"] for j in stages] == [1, 1, 1, 1]  # no stage disappears
    assert not plan.of_kind("search")
    first = stages[0].params
    assert (first["lr"], first["batch_size"], first["bn_samples"], first["seed"]) == (
        0.1, 16, 40, 5)
    paper = Spec.model_validate({"name": "p", "scale": "paper", "members": ["B_0"],
                                 "analysis": {"enabled": False}})
    stages = make_plan(paper, Catalog("catalog.db"), num_classes=1000).of_kind("supernet")
    assert [j.params["epochs"] for j in stages] == [25, 40, 50, 50]  # Listing 1 as written
    assert stages[0].params["lr"] is None and stages[0].params["bn_samples"] == 1500


def test_the_subnet_family_builds_the_standalone_subnetwork():
    arch = {"family": "resnet50_subnet", "subnet": "nB_2"}
    model = build_model(arch, "tiny", 10, 32, seed=0)
    cfg = parse_table_ii(next(r for r in paper.table_ii() if r["id"] == "nB_2"))
    reference = extract(build_supernet("tiny", 10), cfg)
    assert count_parameters(model) == count_parameters(reference)
    assert count_parameters(model) < count_parameters(build_supernet("tiny", 10))
    saved = {"family": "resnet50_subnet", "subnet": "mine",
             "config": {"depth": [0, 1, 2, 2, 1], "width": [0, 0, 0, 0, 0, 0],
                        "expansion": [0.25] * 16}}
    full = build_model(saved, "tiny", 10, 32, seed=0)
    assert count_parameters(full) == count_parameters(build_supernet("tiny", 10))
    with pytest.raises(EnsuiError, match="not a Table ii row"):
        build_model({"family": "resnet50_subnet", "subnet": "B_9"}, "tiny", 10, 32)


def test_a_front_point_is_saved_as_a_subnet_and_planned_as_a_member(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    catalog.record_experiment("e1", "nas", "spec.yaml", "name: nas", [("s1", "supernet")])
    table_ii = {"depth": [0, 0, 0, 0, 1], "width": [0, 0, 0, 2, 2, 2],
                "expansion": [0.2] * 12}
    catalog.record_front("s1", [
        {"config_key": "a", "accuracy": 0.5, "macs": 10, "params": 5, "table_ii": table_ii,
         "subnet": {}},
        {"config_key": "b", "accuracy": 0.7, "macs": 20, "params": 6, "table_ii": None,
         "subnet": {"depths": [1, 2, 3, 1], "widths": [0, 0, 0, 0]}}])
    exp = catalog.find_experiment("nas")
    assert [p["idx"] for p in catalog.front("e1")] == [0, 1]
    row = catalog.save_front_point(exp, 0, "found-0")
    assert (row["depth"], row["expansion"]) == (table_ii["depth"], table_ii["expansion"])
    member = catalog.member_row("found-0")
    assert member["recipe"] == "supernet" and member["arch"]["config"] == table_ii
    for index, name, message in ((1, "x", "Table ii's format cannot"),
                                 (7, "x", "no front point #7"),
                                 (0, "found-0", "already in the catalog"),
                                 (0, "bad name", "letters, digits")):
        with pytest.raises(EnsuiError, match=message):
            catalog.save_front_point(exp, index, name)


@pytest.mark.slow
def test_subnet_members_train_search_and_join_the_study(mixed_run, cli):
    """Through `ensui headless` (conftest.MIXED): B_0 and nB_2 beside other recipes."""
    proc, home = mixed_run
    assert "supernet stage 5/5 epoch 1/1" in proc.stderr and "min_subnet_acc" in proc.stderr
    report = json.loads(proc.stdout)
    members = {m["member"]: m for m in report["members"]}
    assert members["B_0"]["reported_top1"] is not None
    assert all(members[m]["accuracy"]["clean"] is not None for m in ("B_0", "nB_2"))
    front = report["front"]
    assert front and all(a["macs"] < b["macs"] and a["accuracy"] < b["accuracy"]
                         for a, b in zip(front, front[1:]))  # non-dominated, by MACs
    conn = sqlite3.connect(home / "catalog.db")
    done = dict(conn.execute("SELECT kind, count(*) FROM jobs WHERE status = 'done' "
                             "GROUP BY kind").fetchall())
    assert (done["supernet"], done["search"]) == (5, 1)
    subnets = conn.execute("SELECT count(*) FROM jobs WHERE status = 'done' AND kind = 'train' "
                           "AND json_extract(params, '$.recipe') = 'subnet'").fetchone()[0]
    assert subnets == 2
    key, params = conn.execute("SELECT key, params FROM jobs WHERE member = 'nB_2' AND "
                               "kind = 'train'").fetchone()
    params = json.loads(params)
    model = build_model(params["arch"], "tiny", 10, 32)
    model.load_state_dict(torch.load(home / "runs" / key / WEIGHTS, weights_only=True))
    teams = [r[0] for r in conn.execute("SELECT team FROM team_results")]
    assert "B_0 + nB_2" in teams
    writable = [p for p in front if p["table_ii"] is not None]
    point = (writable or front)[0]
    code, out, err = cli("--home", home, "catalog", "save-subnet", "mixed",
                         str(point["idx"]), "found")
    if writable:
        assert code == 0, err
        assert Catalog(home / "catalog.db").member_row("found")["recipe"] == "supernet"
    else:  # every point's depths fell below Table ii's base: saying so is the answer
        assert code == 2 and "cannot write" in " ".join(err.split())
