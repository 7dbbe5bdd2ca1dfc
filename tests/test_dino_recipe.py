"""The DINO recipe as jobs: the plan (a backbone shared by rows that differ only in the
classifier seed, the row's seeds honoured), the k-NN monitor, the multi-resolution
student, exact resume, and the catalog's record of the collapse indicators."""

import copy
import math

import pytest
import torch
from torch import nn

from ensui.catalog import Catalog
from ensui.engine.data.arrays import ImageArray
from ensui.engine.data.multicrop import MultiCrop
from ensui.engine.data.training import ArrayTrain
from ensui.engine.models.factory import build_model
from ensui.engine.plan import make_plan
from ensui.engine.runtime.work import load_backbone
from ensui.engine.spec import Spec
from ensui.engine.train import dino_pretrain, linear_probe
from ensui.engine.train.supervised import Stopped
from ensui.headless import epoch_line

DEIT = {"family": "dino_deit", "embed_dim": 192, "depth": 12, "num_heads": 3, "patch_size": 16}


def _plan(members, **training):
    spec = Spec.model_validate({"name": "d", "scale": "tiny", "members": members,
                                "validation": {"sets": ["clean"]},
                                "analysis": {"enabled": False},
                                "training": {"batch_size": 32, **training}})
    catalog = Catalog("catalog.db")  # in the test's own folder
    return make_plan(spec, catalog)


def test_rows_sharing_a_backbone_share_its_job_and_keep_their_seeds():
    plan = _plan(["dino_resnet1", "dino_resnet2", "dino_deit_tiny1", "dino_deit_tiny2"],
                 epochs=3, dino={"backbone_epochs": 5})
    pretrain = plan.of_kind("pretrain")
    probes = {j.member: j for j in plan.of_kind("train")}
    # dino_resnet1/2: backbone seed 7, same crops -> one backbone; the DeiT rows: seeds 0, 7
    assert len(pretrain) == 3
    seeds = sorted((j.params["arch"]["family"], j.params["seed"]) for j in pretrain)
    assert seeds == [("dino_deit", 0), ("dino_deit", 7), ("dino_resnet50", 7)]
    assert probes["dino_resnet1"].depends == probes["dino_resnet2"].depends
    assert probes["dino_resnet1"].params["backbone_key"] == probes["dino_resnet1"].depends
    assert (probes["dino_resnet1"].params["seed"], probes["dino_resnet2"].params["seed"]) == (5, 15)
    assert probes["dino_resnet1"].key != probes["dino_resnet2"].key
    resnet = next(j for j in pretrain if j.params["arch"]["family"] == "dino_resnet50")
    assert resnet.params["epochs"] == 5 and probes["dino_resnet1"].params["epochs"] == 100
    assert resnet.params["local_scale"] == [0.05, 0.14]
    assert resnet.params["global_scale"] == [0.14, 1.0]
    # Table i's SGD row keeps its weight decay; the DeiT rows get DINO's cosine 0.04 -> 0.4
    assert (resnet.params["weight_decay"], resnet.params["weight_decay_end"]) == (1e-4, 1e-4)
    deit = next(j for j in pretrain if j.params["arch"]["family"] == "dino_deit")
    assert (deit.params["weight_decay"], deit.params["weight_decay_end"]) == (0.04, 0.4)
    evals = plan.of_kind("evaluate")
    assert {e.params["train_key"] for e in evals} == {j.key for j in probes.values()}


def test_a_member_seed_overrides_the_row_and_changes_only_what_it_seeds():
    base = _plan(["dino_resnet1"])
    other = _plan([{"model": "dino_resnet1", "seed": 3}])
    assert other.of_kind("pretrain")[0].params["seed"] == 3
    assert other.of_kind("train")[0].params["seed"] == 3
    assert base.of_kind("pretrain")[0].key != other.of_kind("pretrain")[0].key


def test_tiny_and_paper_defaults_and_spec_overrides():
    tiny = _plan(["dino_deit_tiny1"]).of_kind("pretrain")[0].params
    assert (tiny["n_local"], tiny["local_size"], tiny["out_dim"]) == (4, 16, 256)
    assert tiny["teacher_temp"] == tiny["warmup_teacher_temp"] == 0.02
    assert tiny["blur_sigma"] == pytest.approx([0.1 * 32 / 224, 2.0 * 32 / 224])
    given = _plan(["dino_deit_tiny1"], dino={"n_local": 2, "out_dim": 256, "probe_lr": 0.5})
    params = given.of_kind("pretrain")[0].params
    assert (params["n_local"], params["out_dim"]) == (2, 256)
    assert given.of_kind("train")[0].params["optimizer"]["lr"] == pytest.approx(0.5 * 32 / 256)
    probe = _plan(["dino_resnet1"], epochs=3).of_kind("train")[0].params
    assert (probe["probe"], probe["epochs"]) == ("cached", 100)  # Table i's: cheap when cached
    augmented = _plan(["dino_resnet1"], epochs=3, dino={"probe": "augmented"})
    assert augmented.of_kind("train")[0].params["epochs"] == 3  # a backbone pass per epoch
    assert probe["optimizer"]["lr"] == pytest.approx(0.4 * 32 / 256)


class _Flat(nn.Module):
    """Features = the flattened image: k-NN by hand."""

    def features(self, x):
        return x.flatten(1)


def _array(images, labels):
    n = len(labels)
    return ImageArray(torch.tensor(images, dtype=torch.uint8).view(n, 1, 1, -1).expand(n, 3, 1, 2)
                      .contiguous(), torch.tensor(labels), tuple(map(str, range(n))),
                      ("a", "b", "c"))


def _knn_reference(train, val, k, temperature):
    """Weighted k-NN written out with Python loops and math."""
    def unit(row):
        v = [float(x) for x in row.flatten()]
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    refs = [unit(x.float() / 255) for x in train.images]
    right = 0
    for x, label in zip(val.images, val.labels.tolist(), strict=True):
        q = unit(x.float() / 255)
        sims = sorted(((sum(a * b for a, b in zip(q, r, strict=True)), int(c))
                       for r, c in zip(refs, train.labels.tolist(), strict=True)), reverse=True)
        votes = {}
        for sim, c in sims[:k]:
            votes[c] = votes.get(c, 0.0) + math.exp(sim / temperature)
        right += max(votes, key=votes.get) == label
    return right / len(val.labels)


def test_knn_accuracy_matches_a_hand_computation():
    # Directions: class 0 at 0 and 20 degrees, class 1 at 5; a query at 4 degrees is
    # nearest to class 1, but with k = 3 the two class-0 neighbours outvote it.
    def at(deg):
        return [round(100 * math.cos(math.radians(deg))), round(100 * math.sin(math.radians(deg)))]

    train = _array([at(0), at(20), at(5)], [0, 0, 1])
    val = _array([at(4)], [0])
    cpu = torch.device("cpu")
    assert dino_pretrain.knn_accuracy(_Flat(), train, val, cpu, k=1) == 0.0
    assert dino_pretrain.knn_accuracy(_Flat(), train, val, cpu, k=3) == 1.0


def test_knn_accuracy_matches_a_slow_reference_on_random_features():
    gen = torch.Generator().manual_seed(1)
    train = _array((torch.rand(40, 2, generator=gen) * 255).int().tolist(),
                   (torch.arange(40) % 3).tolist())
    val = _array((torch.rand(25, 2, generator=gen) * 255).int().tolist(),
                 (torch.arange(25) % 3).tolist())
    for k, temperature in ((1, 0.07), (5, 0.07), (20, 0.5)):
        got = dino_pretrain.knn_accuracy(_Flat(), train, val, torch.device("cpu"), k=k,
                                         temperature=temperature)
        assert got == pytest.approx(_knn_reference(train, val, k, temperature))


def test_student_runs_each_resolution_once():
    sizes = []

    class Backbone(nn.Module):
        def features(self, x):
            sizes.append(tuple(x.shape))
            return x.mean(dim=(2, 3))

    head = dino_pretrain.dino.DINOHead(3, 8, 16, 4)
    net = dino_pretrain.DinoNet(Backbone(), head)
    views = [torch.rand(2, 3, 8, 8)] * 2 + [torch.rand(2, 3, 4, 4)] * 3
    out = net(views)
    assert out.shape == (10, 8) and sizes == [(4, 3, 8, 8), (6, 3, 4, 4)]


def _params(**over):
    p = {"seed": 0, "epochs": 2, "batch_size": 32, "optimizer": {"name": "adamw", "lr": 5e-4},
         "scheduler": {"name": "cosine"}, "min_lr": 1e-6, "warmup_epochs": 0.5,
         "weight_decay": 0.04, "weight_decay_end": 0.4, "teacher_momentum": 0.99,
         "out_dim": 64, "head_hidden": 32, "head_bottleneck": 16, "n_local": 2,
         "local_size": 16, "teacher_temp": 0.04, "warmup_teacher_temp": 0.04,
         "warmup_teacher_temp_epochs": 0, "clip_grad": 3.0, "freeze_last_layer": 1}
    return {**p, **over}


def _small_data(n=96):
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 3, 32, 32, generator=gen) * 255).to(torch.uint8)
    array = ImageArray(images, torch.arange(n) % 3, tuple(map(str, range(n))), ("a", "b", "c"))
    views = MultiCrop(32, 16, (0.4, 1.0), (0.05, 0.4), 2, sigma=(0.01, 0.3))
    return ArrayTrain(array, views), array


def test_pretrain_resumes_exactly_and_records_indicators(tmp_path):
    data, array = _small_data()
    seen = []

    def run(folder, stop_after=None):
        model = build_model(DEIT, "tiny", 3, 32, seed=0)
        stop = (lambda: len(seen) >= stop_after) if stop_after else None
        return dino_pretrain.pretrain(model, data, (array, array), _params(), folder,
                                      torch.device("cpu"), seen.append, stop)

    straight = torch.load(run(tmp_path / "a"), weights_only=True)
    seen.clear()
    with pytest.raises(Stopped):
        run(tmp_path / "b", stop_after=1)
    resumed = torch.load(run(tmp_path / "b"), weights_only=True)
    assert [m.epoch for m in seen] == [1, 2]  # the second run did only epoch 2
    assert straight.keys() == resumed.keys() and straight
    assert all(k.startswith("net.backbone.") for k in straight)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    m = seen[-1]
    assert m.train_acc is None and 0 <= m.val_acc <= 1
    assert 0 < m.extra["teacher_entropy"] <= math.log(64) + 1e-4
    assert 0 <= m.extra["kl_to_uniform"] <= math.log(64) + 1e-4
    assert 0.99 < m.extra["teacher_momentum"] <= 1


def test_the_probe_starts_from_the_teacher_backbone_and_trains_only_the_classifier(tmp_path):
    data, array = _small_data(64)
    path = dino_pretrain.pretrain(build_model(DEIT, "tiny", 3, 32, seed=0), data, None,
                                  _params(epochs=1), tmp_path, torch.device("cpu"))
    probe = build_model(DEIT, "tiny", 3, 32, seed=5)
    fresh_classifier = copy.deepcopy(probe.net.classifier.state_dict())
    load_backbone(probe, path)
    saved = torch.load(path, weights_only=True)
    state = probe.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert all(torch.equal(probe.net.classifier.state_dict()[k], v)
               for k, v in fresh_classifier.items())  # the classifier seed's initialisation
    probe.net.freeze_backbone()
    probe.train()
    assert not probe.net.backbone.training and probe.net.classifier.training
    probe(torch.rand(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in probe.net.backbone.parameters())
    assert probe.net.classifier.weight.grad is not None
    with pytest.raises(RuntimeError, match="missing or damaged"):
        load_backbone(probe, tmp_path / "nothing.pt")


def test_catalog_keeps_a_recipes_own_epoch_indicators(tmp_path):
    catalog = Catalog(tmp_path / "c.db")
    catalog.record_epoch("k", 1, extra={"teacher_entropy": 2.5, "kl_to_uniform": 0.25},
                         loss=6.0, train_acc=None, val_acc=0.5, lr=1e-3, seconds=2.0)
    [row] = catalog.epochs("k")
    assert row["teacher_entropy"] == 2.5 and row["train_acc"] is None and row["val_acc"] == 0.5
    line = epoch_line({**row, "member": "d", "kind": "pretrain", "epochs": 4,
                       "extra": '{"teacher_entropy": 2.5, "kl_to_uniform": 0.25}'})
    assert line == ("  d backbone 1/4: loss 6.000 k-NN 50.0% teacher_entropy 2.5 "
                    "kl_to_uniform 0.25 (2.0s)")


def test_a_short_dino_run_learns_features_a_random_backbone_lacks(tmp_path):
    """A real learning signal: after 6 short epochs (48 steps) on 512 digits, the
    teacher's k-NN accuracy on the validation digits is well above a random backbone's
    (measured 0.33 against 0.18), and so is the member's linear probe on cached features
    (about 0.43 against 0.19); the teacher's outputs have collapsed neither to one
    prototype nor to the uniform distribution."""
    from ensui.engine.data.embedded import embedded_split
    from ensui.engine.plan_dino import TINY

    train, val = embedded_split(32, 0.2, 0)
    subset = train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:512])
    arch = {"family": "dino_resnet50"}
    params = _params(epochs=6, batch_size=64, optimizer={"name": "sgd", "lr": 0.03},
                     scheduler={"name": "none"}, weight_decay=1e-4, weight_decay_end=1e-4,
                     warmup_epochs=0.2, out_dim=TINY["out_dim"], head_hidden=TINY["head_hidden"],
                     head_bottleneck=TINY["head_bottleneck"], n_local=4,
                     teacher_temp=TINY["teacher_temp"], warmup_teacher_temp=TINY["teacher_temp"],
                     seed=7)
    views = MultiCrop(32, 16, (0.14, 1.0), (0.05, 0.14), 4, hflip=0.0,
                      sigma=(0.1 * 32 / 224, 2.0 * 32 / 224))
    seen = []
    torch.set_num_threads(2)
    dino_pretrain.pretrain(build_model(arch, "tiny", 10, 32, seed=7), ArrayTrain(subset, views),
                           (subset, val), params, tmp_path, torch.device("cpu"), seen.append)
    random_knn = dino_pretrain.knn_accuracy(build_model(arch, "tiny", 10, 32, seed=7), subset,
                                            val, torch.device("cpu"))
    assert seen[-1].val_acc > random_knn + 0.1, ([m.val_acc for m in seen], random_knn)
    entropy = [m.extra["teacher_entropy"] for m in seen]
    assert min(entropy) > 0.5  # never one prototype for every image
    assert max(entropy) < math.log(TINY["out_dim"]) - ENTROPY_MARGIN, entropy  # nor all alike
    # the member's linear probe, on the trained and on a random frozen backbone
    probe = {"image_size": 32, "batch_size": 64, "epochs": 100, "seed": 5,
             "optimizer": {"lr": TINY["probe_lr"] * 64 / 256}, "scheduler": {"name": "cosine"}}
    accuracy = {}
    for name in ("dino", "random"):
        model = build_model(arch, "tiny", 10, 32, seed=5)
        if name == "dino":
            load_backbone(model, tmp_path / dino_pretrain.BACKBONE)
        model.net.freeze_backbone()
        epochs = []
        linear_probe.train_cached_probe(model, subset, val, probe, tmp_path / name,
                                        torch.device("cpu"), epochs.append)
        accuracy[name] = epochs[-1].val_acc
    assert accuracy["dino"] > accuracy["random"] + PROBE_MARGIN, accuracy


ENTROPY_MARGIN = 0.1
PROBE_MARGIN = 0.1


def test_dino_members_run_as_jobs_and_join_every_diversity_metric(mixed_run):
    """Through `ensui headless` (conftest.MIXED): one backbone job for both ResNet rows, a
    probe per member, and the DINO members in the teams and every diversity matrix."""
    import json
    import sqlite3

    proc, home = mixed_run
    assert "dino_resnet1 backbone 1/1" in proc.stderr and "teacher_entropy" in proc.stderr
    conn = sqlite3.connect(home / "catalog.db")
    kinds = dict(conn.execute("SELECT kind, count(*) FROM jobs WHERE status = 'done' "
                              "GROUP BY kind").fetchall())
    assert kinds["pretrain"] == 1
    probes = conn.execute("SELECT count(*) FROM jobs WHERE status = 'done' AND kind = 'train' "
                          "AND json_extract(params, '$.recipe') = 'dino'").fetchone()[0]
    assert probes == 2
    extra = conn.execute("SELECT e.extra FROM epochs e JOIN jobs j ON j.key = e.job_key "
                         "WHERE j.kind = 'pretrain'").fetchone()[0]
    assert {"teacher_entropy", "kl_to_uniform"} <= set(json.loads(extra))
    teams = [r[0] for r in conn.execute("SELECT team FROM team_results")]
    assert "dino_resnet1 + dino_resnet2" in teams
    for metric in ("label_disagreement", "attribution_diversity", "activation_diversity"):
        members = json.loads(conn.execute("SELECT members FROM pairwise WHERE metric = ?",
                                          [metric]).fetchone()[0])
        assert {"dino_resnet1", "dino_resnet2"} <= set(members), metric
    members = {m["member"]: m for m in json.loads(proc.stdout)["members"]}
    assert members["dino_resnet2"]["reported_top1"] is not None
