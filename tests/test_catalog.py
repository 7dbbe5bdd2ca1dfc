import json
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from ensui import paper
from ensui.catalog import SCHEMA_VERSION, Catalog
from ensui.errors import UnknownIdError


@pytest.fixture
def catalog(home):
    return Catalog(home / "catalog.db")


def test_seeded_with_every_row_of_the_supplementary(catalog):
    assert [m["id"] for m in catalog.models()] == [r["id"] for r in paper.table_i()]
    assert len(catalog.models()) == 14
    assert len(catalog.subnets()) == 11
    assert [t["name"] for t in catalog.transforms()] == [
        "RandomResizedCrop", "RandomHorizontalFlip", "Normalize"]
    listing = catalog.config("bootstrapnas")["bootstrapNAS"]
    stages = listing["training"]["schedule"]["list_stage_descriptions"]
    assert sum(s["epochs"] for s in stages) == 165
    assert listing["search"] == {"algorithm": "NSGA2", "num_evals": 1000, "population": 50,
                                 "ref_acc": 93.65}


def test_every_figure_a_accuracy_is_attached(catalog):
    reported = {m["figure_a_id"]: m["reported_top1"] for m in catalog.models()}
    reported |= {s["id"]: s["reported_top1"] for s in catalog.subnets()}
    assert len(reported) == 25 and None not in reported.values()
    assert reported["Squeezenet_512"] == 41.918
    assert reported["wB_1b"] == 75.804
    assert reported["bootstrapNAS-B_1"] == 76.282


def test_row_fields_as_printed(catalog):
    row = catalog.model("MNASNET_1p")
    assert row["optimizer"] == {"name": "rmsprop", "lr": 0.256, "alpha": 0.9, "momentum": 0.9,
                                "weight_decay": 0.0, "eps": 0.001}
    assert row["scheduler"] == {"name": "step", "gamma": 0.97, "step_epochs": 2.4}
    r = catalog.model("ResNext50_32.4l")
    assert r["arch"]["layers"] == [2, 2, 3, 2] and r["arch"]["cardinality"] == 32
    assert catalog.model("SqueezeNet_512")["batch_size"] == 512
    assert catalog.model("dino_resnet2")["extra"]["dino"]["classifier_seed"] == 15


@pytest.mark.parametrize("spelling,expected", [
    ("ResNext50_32.2", "ResNext50_32.2"), ("ResNext50_32_2", "ResNext50_32.2"),
    ("ResNext50_32_4l", "ResNext50_32.4l"), ("Squeezenet_512", "SqueezeNet_512"),
    ("bootstrapNAS-B_0", "bootstrapNAS-B.0"), ("mnasnet_1p", "MNASNET_1p"),
])
def test_both_id_spellings_resolve(catalog, spelling, expected):
    assert catalog.resolve(spelling)[0] == expected


def test_subnet_ids_resolve_and_unknown_ids_suggest(catalog):
    assert catalog.show("wB_1c")[0] == "subnet"
    with pytest.raises(UnknownIdError, match="did you mean 'deit_tiny_p16_224'"):
        catalog.model("deit_tiny_p16")


def test_wal_busy_timeout_and_schema_version(catalog):
    mode = catalog.db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert catalog.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert catalog.schema_version() == SCHEMA_VERSION


def test_reopening_does_not_duplicate_or_reseed(home):
    first = Catalog(home / "catalog.db")
    first.db.execute("UPDATE models SET printed = 'edited' WHERE id = 'SqueezeNet'")
    first.close()
    again = Catalog(home / "catalog.db")
    assert again.counts()["models"] == 14
    assert again.model("SqueezeNet")["printed"] == "edited"


def test_newer_schema_is_refused(home):
    Catalog(home / "catalog.db").close()
    conn = sqlite3.connect(home / "catalog.db")
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this ensui"):
        Catalog(home / "catalog.db")


def test_readable_by_plain_sqlite(catalog):
    conn = sqlite3.connect(catalog.path)
    (lr,) = conn.execute(
        "SELECT json_extract(optimizer, '$.lr') FROM models WHERE id = 'deit_tiny_p16_224'").fetchone()
    assert lr == 0.0005


def test_concurrent_first_use_creates_one_schema(home):
    """Several processes opening a new catalog at once: one migrates, none fails."""
    code = textwrap.dedent(f"""
        from ensui.catalog import Catalog
        c = Catalog({str(home / 'catalog.db')!r})
        for i in range(20):
            c.record_epoch('job-' + str(__import__('os').getpid()), i, loss=1.0)
        print(c.counts()['models'])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert all(out.strip() == "14" for out, _ in results)
    cat = Catalog(home / "catalog.db")
    assert cat.db.execute("SELECT count(*) FROM epochs").fetchone()[0] == 80


def test_opening_retries_while_the_file_is_locked_and_only_then():
    from ensui.catalog import when_unlocked

    answers = [sqlite3.OperationalError("database is locked")] * 2 + [None]

    def step():
        answer = answers.pop(0)
        if answer:
            raise answer

    when_unlocked(step)
    assert answers == []  # two refusals, then done
    def refuse(message):
        raise sqlite3.OperationalError(message)

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        when_unlocked(lambda: refuse("no such table"))  # not a lock: at once
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        when_unlocked(lambda: refuse("database is locked"), timeout_s=0.2)
    assert time.monotonic() - started < 5  # gives up after its timeout


def test_catalog_cli(cli, home):
    code, out, _ = cli("catalog", "models", "--json")
    assert code == 0 and len(json.loads(out)) == 14
    code, out, _ = cli("catalog", "subnets", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)][:2] == ["B_0", "B_1"]
    code, out, _ = cli("catalog", "show", "ResNext50_16_4", "--json")
    assert code == 0 and json.loads(out)["arch"]["cardinality"] == 16
    code, out, _ = cli("catalog", "models")
    assert code == 0 and "MNASNET_1p" in out and "75.198" in out
    code, _, err = cli("catalog", "show", "nB_9")
    assert code == 2 and "did you mean" in err and "Traceback" not in err


def test_info_prints_paths(cli, home, tmp_path):
    code, out, _ = cli("info", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["catalog"] == str(home / "catalog.db")
    other = tmp_path / "elsewhere"
    code, out, _ = cli("--home", other, "info", "--json")
    assert json.loads(out)["home"] == str(other)


def test_model_variant_is_a_new_entry_with_its_overrides(tmp_path):
    from ensui.catalog import Catalog

    catalog = Catalog(tmp_path / "c.db")
    row = catalog.add_model_variant("MNASNet_1", "mnasnet-short", {"epochs": 10, "lr": 0.05})
    assert row["epochs"] == 10 and row["optimizer"]["lr"] == 0.05
    assert row["arch"] == catalog.model("MNASNET_1")["arch"] and row["reported_top1"] is None
    assert catalog.model("mnasnet-short")["extra"]["variant_of"] == "MNASNET_1"
    assert catalog.model("MNASNET_1")["epochs"] != 10  # the original is untouched
    for name, overrides, message in [("mnasnet-short", {}, "already in the catalog"),
                                     ("bad name", {}, "name: use letters"),
                                     ("x", {"epochs": 0}, "epochs: must be greater than 0"),
                                     ("x", {"lr": "fast"}, "lr: 'fast' is not a number"),
                                     ("x", {"dropout": 0.1}, "dropout: not a field")]:
        with pytest.raises(ValueError, match=message):
            catalog.add_model_variant("MNASNET_1", name, overrides)
    reopened = Catalog(tmp_path / "c.db")  # survives reopening (no re-seed overwrites it)
    assert reopened.model("mnasnet-short")["epochs"] == 10
