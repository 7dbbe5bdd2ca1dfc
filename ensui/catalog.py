"""The catalog: one SQLite file holding models, subnetworks, jobs, epochs and results.

This is the only module that speaks SQL. Tables have explicit primary keys, JSON
columns hold nested values (readable by any SQLite tool with `json_extract`), and the
schema evolves through ordered migrations recorded in `meta.schema_version`.
Writers keep transactions short; WAL and a busy timeout let many readers and
one writer at a time share the file.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import sqlite_utils

from ensui import paper
from ensui.catalog_queue import FollowMixin, QueueMixin, migration_4
from ensui.errors import EnsuiError, UnknownIdError

BUSY_TIMEOUT_S = 30.0


class CatalogTooNew(EnsuiError, RuntimeError):
    """The file was written by a newer ensui; opening it could damage it."""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _migration_1(db: sqlite_utils.Database) -> None:
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["models"].create(
        {"id": str, "figure_a_id": str, "family": str, "recipe": str, "printed": str,
         "arch": str, "optimizer": str, "scheduler": str, "epochs": str,
         "batch_size": int, "extra": str, "reported_top1": float, "source": str},
        pk="id",
    )
    db["subnets"].create(
        {"id": str, "depth": str, "expansion": str, "width": str, "note": str,
         "reported_top1": float, "source": str},
        pk="id",
    )
    db["aliases"].create({"alias": str, "id": str, "kind": str}, pk="alias")
    db["transforms"].create({"position": int, "name": str, "params": str}, pk="position")
    db["configs"].create({"name": str, "body": str}, pk="name")
    db["experiments"].create(
        {"id": str, "name": str, "spec_path": str, "spec": str, "created": str},
        pk="id",
    )
    db["jobs"].create(
        {"key": str, "kind": str, "member": str, "model_id": str, "params": str,
         "status": str, "attempts": int, "created": str, "started": str,
         "finished": str, "seconds": float, "error": str, "artifact": str},
        pk="key",
    )
    db["experiment_jobs"].create(
        {"experiment_id": str, "job_key": str, "member": str},
        pk=("experiment_id", "job_key", "member"),
    )
    db["epochs"].create(
        {"job_key": str, "epoch": int, "loss": float, "train_acc": float,
         "val_acc": float, "lr": float, "seconds": float},
        pk=("job_key", "epoch"),
    )
    db["results"].create(
        {"job_key": str, "train_key": str, "model_id": str, "val_set": str,
         "accuracy": float, "nll": float, "n": int, "recorded": str},
        pk="job_key",
    )
    db["jobs"].create_index(["status"])
    db["results"].create_index(["train_key"])


_STATISTICS = ("pearson_r", "pearson_p", "spearman_r", "spearman_p", "pearson_ci_low",
               "pearson_ci_high", "spearman_ci_low", "spearman_ci_high", "partial_r", "partial_p")


def _migration_2(db: sqlite_utils.Database) -> None:
    """The ensemble study: teams, correlations (Figure B), pairwise matrices, resilience."""
    db["team_results"].create(
        {"experiment_id": str, "val_set": str, "consensus": str, "team": str, "members": str,
         "size": int, "accuracy": float, "nll": float, "average_accuracy": float,
         "vs_mean": float, "vs_best": float, "eir": float, "nll_gain": float,
         "diversity": str},
        pk=("experiment_id", "val_set", "consensus", "team"))
    db["correlations"].create(
        {"experiment_id": str, "val_set": str, "consensus": str, "metric": str, "size": str,
         "improvement": str, "n": int, **{k: float for k in _STATISTICS}},
        pk=("experiment_id", "val_set", "consensus", "metric", "size"))
    db["pairwise"].create(
        {"experiment_id": str, "val_set": str, "metric": str, "members": str, "matrix": str},
        pk=("experiment_id", "val_set", "metric"))
    db["resilience"].create(
        {"experiment_id": str, "name": str, "val_set": str, "accuracy": float,
         "clean_accuracy": float, "drop": float, "relative_drop": float},
        pk=("experiment_id", "name", "val_set"))
    db.create_view("figure_b", "SELECT experiment_id, consensus, metric, val_set, pearson_r, "
                   "spearman_r, n FROM correlations WHERE size = 'all'")
    db.create_view("best_teams", "SELECT experiment_id, val_set, consensus, team, accuracy, "
                   "vs_best FROM team_results ORDER BY experiment_id, val_set, accuracy DESC")


def _migration_3(db: sqlite_utils.Database) -> None:
    """Corruption error per member and corruption (vs a reference member and AlexNet)."""
    db["corruption_errors"].create(
        {"experiment_id": str, "member": str, "corruption": str, "ce": float,
         "reference": str, "ce_alexnet": float},
        pk=("experiment_id", "member", "corruption"))


def _migration_5(db: sqlite_utils.Database) -> None:
    """A recipe's own per-epoch indicators (JSON), e.g. DINO's teacher entropy."""
    db["epochs"].add_column("extra", str)


# Ordered; entry i upgrades the schema from version i to i + 1. Never edit a shipped one.
def _migration_6(db: sqlite_utils.Database) -> None:
    """The λ sweep: jointly trained ensembles beside independently trained teams."""
    db["sweep"].create(
        {"experiment_id": str, "grp": str, "team": str, "val_set": str, "consensus": str,
         "loss": str, "lam": float, "members": str, "size": int, "accuracy": float,
         "nll": float, "average_accuracy": float, "vs_mean": float, "vs_best": float,
         "eir": float, "nll_gain": float, "drop": float, "diversity": str},
        pk=("experiment_id", "grp", "team", "val_set", "consensus"))


def _migration_7(db: sqlite_utils.Database) -> None:
    """The Pareto front of a sub-network search job (accuracy vs MACs)."""
    db["fronts"].create(
        {"job_key": str, "idx": int, "config_key": str, "accuracy": float, "macs": int,
         "params": int, "table_ii": str, "subnet": str},
        pk=("job_key", "idx"))


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migration_1, _migration_2, _migration_3, migration_4, _migration_5, _migration_6,
    _migration_7]
SCHEMA_VERSION = len(MIGRATIONS)


def when_unlocked(step: Callable[[], None], timeout_s: float = BUSY_TIMEOUT_S) -> None:
    """Run `step`, again while SQLite says the file is locked. A new file opened by
    several processes at once can answer 'locked' without waiting on the busy timeout
    (seen once in a hundred runs of four processes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Catalog(QueueMixin, FollowMixin):
    """A handle on one catalog file; cheap to open, safe to open from many processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        self.db = sqlite_utils.Database(conn)
        when_unlocked(self.db.enable_wal)
        when_unlocked(self._migrate)

    @classmethod
    def memory(cls) -> "Catalog":
        """An in-memory catalog for tests and dry runs (nothing touches disk)."""
        self = cls.__new__(cls)
        self.path = Path(":memory:")
        self.db = sqlite_utils.Database(sqlite3.connect(":memory:", isolation_level=None))
        self._migrate()
        return self

    def close(self) -> None:
        self.db.conn.close()

    # -- schema ---------------------------------------------------------------

    def schema_version(self) -> int:
        if "meta" not in self.db.table_names():
            return 0
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        if self.schema_version() == SCHEMA_VERSION:
            return  # the common case: no write lock just to open the file
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")  # one process migrates; others wait, then see it done
        try:
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise CatalogTooNew(
                    f"catalog {self.path} has schema {version}, newer than this ensui "
                    f"({SCHEMA_VERSION}); upgrade ensui to open it")
            for migrate in MIGRATIONS[version:]:
                migrate(self.db)
            if version < SCHEMA_VERSION:
                self.db["meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key")
                _seed(self.db)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- models and subnetworks -------------------------------------------------

    def resolve(self, raw: str, kind: str | None = None) -> tuple[str, str]:
        """(canonical id, kind) for any spelling the paper uses; UnknownIdError otherwise."""
        row = self.db.execute(
            "SELECT id, kind FROM aliases WHERE alias = ?", [paper.normalize_id(raw)]
        ).fetchone()
        if row and (kind is None or row[1] == kind):
            return row[0], row[1]
        raise UnknownIdError(self._unknown_message(raw, kind))

    def _unknown_message(self, raw: str, kind: str | None) -> str:
        where = "SELECT id FROM models" if kind == "model" else (
            "SELECT id FROM subnets" if kind == "subnet" else
            "SELECT id FROM models UNION SELECT id FROM subnets")
        ids = [r[0] for r in self.db.execute(where).fetchall()]
        close = difflib.get_close_matches(raw, ids, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(ids)}"
        return f"unknown {kind or 'model or subnetwork'} id '{raw}'{hint}"

    def models(self) -> list[dict]:
        return [_decode(r) for r in self.db.query("SELECT * FROM models ORDER BY rowid")]

    def subnets(self) -> list[dict]:
        return [_decode(r) for r in self.db.query("SELECT * FROM subnets ORDER BY rowid")]

    def model(self, raw_id: str) -> dict:
        model_id, _ = self.resolve(raw_id, "model")
        return _decode(self.db["models"].get(model_id))

    def member_row(self, raw_id: str) -> dict:
        """What a spec member names: a Table i model, or a sub-network as a model row of
        recipe `supernet` whose arch holds its configuration (Table ii's format)."""
        ident, kind = self.resolve(raw_id)
        if kind == "model":
            row = self.model(ident)
            if row["arch"].get("family") == "resnet50_subnet" and "config" not in row["arch"]:
                row["arch"] = {**row["arch"], "config": _config(self.subnet(row["arch"]["subnet"]))}
            return row
        subnet = self.subnet(ident)
        return {"id": ident, "recipe": "supernet", "family": "resnet50_subnet",
                "arch": {"family": "resnet50_subnet", "subnet": ident, "config": _config(subnet)},
                "reported_top1": subnet["reported_top1"], "extra": {},
                # as Table i's bootstrapNAS rows say: trained by Listing 1's schedule
                "optimizer": {"name": "sgd", "see": "Listing 1"},
                "scheduler": {"name": "listing_1"}, "epochs": None, "batch_size": None}

    def subnet(self, raw_id: str) -> dict:
        ident, _ = self.resolve(raw_id, "subnet")
        return _decode(self.db["subnets"].get(ident))

    def add_subnet(self, new_id: str, config: dict, note: str, source: str) -> dict:
        """A new catalog sub-network (e.g. a search point) in Table ii's format; ValueError
        names what is wrong."""
        from ensui.engine.nas.subnet_config import parse_table_ii

        if not new_id or not all(c.isalnum() or c in "._-" for c in new_id):
            raise ValueError("name: use letters, digits, '.', '_' or '-'")
        if self.db.execute("SELECT 1 FROM aliases WHERE alias = ?",
                           [paper.normalize_id(new_id)]).fetchone():
            raise ValueError(f"name: '{new_id}' is already in the catalog")
        parse_table_ii(config)  # SubnetConfigError names the entry
        with self.db.atomic():
            self.db["subnets"].insert(
                {"id": new_id, **{k: json.dumps(config[k]) for k in ("depth", "expansion",
                                                                     "width")},
                 "note": note, "reported_top1": None, "source": source}, pk="id")
            self.db["aliases"].insert({"alias": paper.normalize_id(new_id), "id": new_id,
                                       "kind": "subnet"}, pk="alias")
        return self.subnet(new_id)

    def save_front_point(self, exp: dict, index: int, name: str) -> dict:
        """The new sub-network of the front's point `index`; EnsuiError says what is wrong."""
        front = self.front(exp["id"])
        point = next((p for p in front if p["idx"] == index), None)
        if point is None:
            raise EnsuiError(f"index: {exp['name']} has no front point #{index}"
                             + (f" (0..{len(front) - 1})" if front else "; it ran no search"))
        if point["table_ii"] is None:
            raise EnsuiError(f"index: point #{index}'s depths fall below Table ii's base depths; "
                             "Table ii's format cannot write it")
        note = (f"search front #{index}: {100 * point['accuracy']:.1f} %, "
                f"{point['macs'] / 1e6:.1f} MMACs")
        try:
            return self.add_subnet(name, point["table_ii"], note,
                                   f"experiment {exp['name']} {exp['id'][:8]}")
        except ValueError as exc:
            raise EnsuiError(str(exc)) from None

    def show(self, raw_id: str) -> tuple[str, dict]:
        """(kind, row) of a model or subnetwork."""
        ident, kind = self.resolve(raw_id)
        table = "models" if kind == "model" else "subnets"
        return kind, _decode(self.db[table].get(ident))

    def add_model_variant(self, base_id: str, new_id: str, overrides: dict) -> dict:
        """A new catalog model: `base_id`'s row with `overrides` (epochs, batch_size, lr,
        weight_decay, momentum) applied; no reported top-1. ValueError names the field."""
        base = self.model(base_id)
        if not new_id or not all(c.isalnum() or c in "._-" for c in new_id):
            raise ValueError("name: use letters, digits, '.', '_' or '-'")
        if self.db.execute("SELECT 1 FROM aliases WHERE alias = ?",
                           [paper.normalize_id(new_id)]).fetchone():
            raise ValueError(f"name: '{new_id}' is already in the catalog")
        row = _variant_row(base, new_id, overrides)
        with self.db.atomic():
            self.db["models"].insert(row, pk="id")
            self.db["aliases"].insert({"alias": paper.normalize_id(new_id), "id": new_id,
                                       "kind": "model"}, pk="alias")
        return self.model(new_id)

    def transforms(self) -> list[dict]:
        return [_decode(r) for r in self.db.query("SELECT * FROM transforms ORDER BY position")]

    def config(self, name: str) -> dict:
        return json.loads(self.db["configs"].get(name)["body"])

    # -- experiments and jobs ---------------------------------------------------

    def record_experiment(self, exp_id: str, name: str, spec_path: str, spec_text: str,
                          jobs: Iterable[tuple[str, str]]) -> None:
        """Register an experiment and its (job key, member) pairs in one transaction."""
        with self.db.atomic():
            self.db["experiments"].upsert(
                {"id": exp_id, "name": name, "spec_path": spec_path, "spec": spec_text,
                 "created": _now()}, pk="id")
            self.db["experiment_jobs"].upsert_all(
                [{"experiment_id": exp_id, "job_key": k, "member": m} for k, m in jobs],
                pk=("experiment_id", "job_key", "member"))

    def job(self, key: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM jobs WHERE key = ?", [key]))
        return _decode(rows[0]) if rows else None

    def experiment_jobs(self, exp_id: str) -> list[dict]:
        return [_decode(r) for r in self.db.query(
            "SELECT j.*, ej.member AS label FROM experiment_jobs ej "
            "JOIN jobs j ON j.key = ej.job_key WHERE ej.experiment_id = ? ORDER BY j.rowid",
            [exp_id])]

    # -- metrics ----------------------------------------------------------------

    def record_epoch(self, job_key: str, epoch: int, extra: dict | None = None,
                     **metrics: float | None) -> None:
        self.db["epochs"].upsert({"job_key": job_key, "epoch": epoch, **metrics,
                                  "extra": json.dumps(extra) if extra else None},
                                 pk=("job_key", "epoch"))

    def epochs(self, job_key: str) -> list[dict]:
        """A job's epochs, each with its recipe's own indicators merged in."""
        return [_with_extra(r) for r in self.db.query(
            "SELECT * FROM epochs WHERE job_key = ? ORDER BY epoch", [job_key])]

    def record_result(self, job_key: str, train_key: str, model_id: str, val_set: str,
                      accuracy: float, nll: float, n: int) -> None:
        self.db["results"].upsert(
            {"job_key": job_key, "train_key": train_key, "model_id": model_id,
             "val_set": val_set, "accuracy": accuracy, "nll": nll, "n": n,
             "recorded": _now()}, pk="job_key")

    def record_front(self, job_key: str, rows: list[dict]) -> None:
        """Replace a search job's Pareto front (rows of `nas.search.front_rows`)."""
        with self.db.atomic():
            self.db.execute("DELETE FROM fronts WHERE job_key = ?", [job_key])
            self.db["fronts"].insert_all(
                {"job_key": job_key, "idx": i, **{k: r[k] for k in ("config_key", "accuracy",
                                                                  "macs", "params")},
                 "table_ii": json.dumps(r["table_ii"]), "subnet": json.dumps(r["subnet"])}
                for i, r in enumerate(rows))

    def front(self, exp_id: str) -> list[dict]:
        """The Pareto front of the experiment's search job, by MACs ascending."""
        return [{**r, "table_ii": json.loads(r["table_ii"]), "subnet": json.loads(r["subnet"])}
                for r in self.db.query(
                    "SELECT f.* FROM fronts f JOIN experiment_jobs x ON x.job_key = f.job_key "
                    "WHERE x.experiment_id = ? ORDER BY f.job_key, f.idx", [exp_id])]

    def result(self, job_key: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM results WHERE job_key = ?", [job_key]))
        return rows[0] if rows else None

    def record_study(self, exp_id: str, team_rows: dict[str, list[dict]],
                     correlations: list[dict], matrices: dict[str, dict], members: list[str],
                     resilience: list[dict], corruption_errors: list[dict],
                     sweep: list[dict] = ()) -> None:
        """Replace the experiment's study in one transaction (a re-run recomputes it)."""
        with self.db.atomic():
            for table in ("team_results", "correlations", "pairwise", "resilience",
                          "corruption_errors", "sweep"):
                self.db.execute(f"DELETE FROM {table} WHERE experiment_id = ?", [exp_id])
            self.db["team_results"].insert_all(
                _team_record(exp_id, set_name, row)
                for set_name, rows in team_rows.items() for row in rows)
            self.db["correlations"].insert_all(
                {"experiment_id": exp_id, "val_set": r["set"], "consensus": r["consensus"],
                 "metric": r["metric"], "size": str(r["size"]), "improvement": r["improvement"],
                 "n": r["n"], **{k: r[k] for k in _STATISTICS}} for r in correlations)
            self.db["pairwise"].insert_all(
                {"experiment_id": exp_id, "val_set": set_name, "metric": metric,
                 "members": json.dumps(members), "matrix": json.dumps(matrix.tolist())}
                for set_name, per_metric in matrices.items()
                for metric, matrix in per_metric.items())
            self.db["resilience"].insert_all(
                {"experiment_id": exp_id, "name": r["name"], "val_set": r["set"],
                 **{k: r[k] for k in ("accuracy", "clean_accuracy", "drop", "relative_drop")}}
                for r in resilience)
            self.db["corruption_errors"].insert_all(
                {"experiment_id": exp_id, **r} for r in corruption_errors)
            self.db["sweep"].insert_all(_sweep_record(exp_id, r) for r in sweep)

    def find_experiment(self, ref: str) -> dict:
        """An experiment by id, id prefix or name (the newest of that name)."""
        rows = list(self.db.query(
            "SELECT * FROM experiments WHERE id = ? OR id LIKE ? OR name = ? "
            "ORDER BY created DESC, rowid DESC", [ref, f"{ref}%", ref]))
        if not rows:
            names = [r[0] for r in self.db.execute("SELECT DISTINCT name FROM experiments")]
            close = difflib.get_close_matches(ref, names, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else (
                f"; known: {', '.join(names)}" if names else "; none recorded yet")
            raise UnknownIdError(f"unknown experiment '{ref}'{hint}")
        return rows[0]

    def experiment_tables(self, exp_id: str) -> dict[str, list[dict]]:
        """Every result table of an experiment, as rows, for export."""
        one = [exp_id]
        pairwise = []
        for row in self.db.query("SELECT * FROM pairwise WHERE experiment_id = ?", one):
            members, matrix = json.loads(row["members"]), json.loads(row["matrix"])
            pairwise += [{"val_set": row["val_set"], "metric": row["metric"], "member_a": a,
                          "member_b": b, "value": matrix[i][k]}
                         for i, a in enumerate(members) for k, b in enumerate(members)]
        return {
            "members": self.member_results(exp_id),
            "epochs": list(self.db.query(
                "SELECT ej.member, e.* FROM experiment_jobs ej JOIN epochs e "
                "ON e.job_key = ej.job_key WHERE ej.experiment_id = ? ORDER BY ej.rowid, e.epoch",
                one)),
            "teams": self.team_results(exp_id),
            "sweep": self.sweep_results(exp_id),
            "correlations": list(self.db.query(
                "SELECT * FROM correlations WHERE experiment_id = ?", one)),
            "resilience": list(self.db.query(
                "SELECT * FROM resilience WHERE experiment_id = ?", one)),
            "corruption_errors": list(self.db.query(
                "SELECT * FROM corruption_errors WHERE experiment_id = ?", one)),
            "pairwise": pairwise,
        }

    def experiments_page(self, limit: int = 50, offset: int = 0) -> list[dict]:
        """Experiments newest first, with member count and jobs done / failed / total."""
        return list(self.db.query(
            "SELECT e.id, e.name, e.created, count(DISTINCT NULLIF(x.member, '')) AS members, "
            "count(DISTINCT x.job_key) AS total, "
            "count(DISTINCT CASE WHEN j.status = 'done' THEN x.job_key END) AS done, "
            "count(DISTINCT CASE WHEN j.status = 'failed' THEN x.job_key END) AS failed "
            "FROM (SELECT rowid AS rid, * FROM experiments ORDER BY created DESC, rowid DESC "
            "LIMIT ? OFFSET ?) e LEFT JOIN experiment_jobs x ON x.experiment_id = e.id "
            "LEFT JOIN jobs j ON j.key = x.job_key GROUP BY e.id "
            "ORDER BY e.created DESC, e.rid DESC", [limit, offset]))

    def newest_experiment(self) -> dict | None:
        rows = list(self.db.query(
            "SELECT * FROM experiments ORDER BY created DESC, rowid DESC LIMIT 1"))
        return rows[0] if rows else None

    def member_results(self, exp_id: str) -> list[dict]:
        """Accuracy and NLL of each member on each validation set."""
        return list(self.db.query(
            "SELECT ej.member, r.model_id, r.val_set, r.accuracy, r.nll, r.n "
            "FROM experiment_jobs ej JOIN results r ON r.job_key = ej.job_key "
            "WHERE ej.experiment_id = ? ORDER BY ej.rowid", [exp_id]))

    def sweep_results(self, exp_id: str) -> list[dict]:
        """The λ sweep's rows in the order recorded, diversity metrics as columns."""
        return [{"group": r.pop("grp"), **_flatten_team(r)} for r in self.db.query(
            "SELECT * FROM sweep WHERE experiment_id = ? ORDER BY rowid", [exp_id])]

    def team_results(self, exp_id: str) -> list[dict]:
        """Team rows with every diversity metric as a column."""
        return [_flatten_team(r) for r in self.db.query(
            "SELECT * FROM team_results WHERE experiment_id = ?", [exp_id])]

    def figure_b(self, exp_id: str, consensus: str | None = None) -> dict:
        """Metrics × sets Pearson r for one consensus (the first recorded by default)."""
        rows = list(self.db.query(  # insertion order keeps the spec's order of sets and metrics
            "SELECT * FROM correlations WHERE experiment_id = ? AND size = 'all' ORDER BY rowid",
            [exp_id]))
        consensus = consensus or (rows[0]["consensus"] if rows else None)
        rows = [r for r in rows if r["consensus"] == consensus]
        metrics = list(dict.fromkeys(r["metric"] for r in rows))
        sets = list(dict.fromkeys(r["val_set"] for r in rows))
        cell = {(r["metric"], r["val_set"]): r["pearson_r"] for r in rows}
        stats = {f"{r['metric']}|{r['val_set']}": {k: r[k] for k in ("n", *_STATISTICS)}
                 for r in rows}
        return {"consensus": consensus, "metrics": metrics, "sets": sets,
                "improvement": rows[0]["improvement"] if rows else None,
                "values": [[cell.get((m, s)) for s in sets] for m in metrics], "stats": stats}

    def pairwise_matrices(self, exp_id: str) -> list[dict]:
        return [{"val_set": r["val_set"], "metric": r["metric"],
                 "members": json.loads(r["members"]), "matrix": json.loads(r["matrix"])}
                for r in self.db.query("SELECT * FROM pairwise WHERE experiment_id = ? "
                                       "ORDER BY rowid", [exp_id])]

    def counts(self) -> dict[str, int]:
        return {t: self.db[t].count for t in ("models", "subnets", "experiments", "jobs", "results")}


_TEAM_COLUMNS = ("size", "consensus", "accuracy", "nll", "average_accuracy", "vs_mean",
                 "vs_best", "eir", "nll_gain")


def _config(subnet: dict) -> dict:
    return {k: subnet[k] for k in ("depth", "expansion", "width")}


def _with_extra(row: dict) -> dict:
    extra = json.loads(row.pop("extra", None) or "{}")
    return {**row, **extra}


def _team_record(exp_id: str, set_name: str, row: dict) -> dict:
    diversity = {k: v for k, v in row.items() if k not in _TEAM_COLUMNS and k != "team"}
    return {"experiment_id": exp_id, "val_set": set_name, "team": " + ".join(row["team"]),
            "members": json.dumps(list(row["team"])), "diversity": json.dumps(diversity),
            **{k: row[k] for k in _TEAM_COLUMNS}}


_SWEEP_KEYS = ("group", "team", "set", "members", "lam", "loss", "drop")


def _sweep_record(exp_id: str, row: dict) -> dict:
    diversity = {k: v for k, v in row.items()
                 if k not in _TEAM_COLUMNS and k not in _SWEEP_KEYS}
    return {"experiment_id": exp_id, "grp": row["group"], "team": row["team"],
            "val_set": row["set"], "loss": row["loss"], "lam": row["lam"],
            "members": json.dumps(row["members"]), "drop": row["drop"],
            "diversity": json.dumps(diversity), **{k: row[k] for k in _TEAM_COLUMNS}}


def _flatten_team(row: dict) -> dict:
    """A team row with its diversity metrics as columns (for CSV)."""
    flat = {k: v for k, v in row.items() if k not in ("diversity", "members")}
    return {**flat, **json.loads(row["diversity"])}


_JSON_COLUMNS = {"arch", "optimizer", "scheduler", "epochs", "extra", "depth", "expansion",
                 "width", "params", "deps"}


def _decode(row: dict) -> dict:
    return {k: json.loads(v) if k in _JSON_COLUMNS and isinstance(v, str) else v
            for k, v in row.items()}


def _seed(db: sqlite_utils.Database) -> None:
    """Fill the paper's tables; upserts, so a re-seed after a migration is harmless."""
    reported = paper.figure_a()
    model_top1 = {paper.normalize_id(k): v for k, v in reported["models"].items()}
    db["models"].upsert_all([_model_row(r, model_top1) for r in paper.table_i()], pk="id")
    db["subnets"].upsert_all([_subnet_row(r, reported["subnets"]) for r in paper.table_ii()], pk="id")
    aliases = []
    for row in paper.table_i():
        for name in {row["id"], row["figure_a_id"]}:
            aliases.append({"alias": paper.normalize_id(name), "id": row["id"], "kind": "model"})
    for row in paper.table_ii():
        aliases.append({"alias": paper.normalize_id(row["id"]), "id": row["id"], "kind": "subnet"})
    db["aliases"].upsert_all(aliases, pk="alias")
    db["transforms"].upsert_all(
        [{"position": t["order"], "name": t["name"], "params": json.dumps(t["params"])}
         for t in paper.table_iii()], pk="position")
    db["configs"].upsert({"name": "bootstrapnas", "body": json.dumps(paper.listing_1())}, pk="name")


def _model_row(row: dict, top1: dict[str, float]) -> dict:
    extra = {k: row[k] for k in ("dino", "filled") if k in row}
    return {
        "id": row["id"], "figure_a_id": row["figure_a_id"], "family": row["arch"]["family"],
        "recipe": row["recipe"], "printed": row["printed"],
        "arch": json.dumps(row["arch"]), "optimizer": json.dumps(row["optimizer"]),
        "scheduler": json.dumps(row["scheduler"]), "epochs": json.dumps(row["epochs"]),
        "batch_size": row["batch_size"], "extra": json.dumps(extra),
        "reported_top1": top1.get(paper.normalize_id(row["figure_a_id"])), "source": "paper",
    }


VARIANT_FIELDS = {"epochs": int, "batch_size": int, "lr": float, "weight_decay": float,
                  "momentum": float}


def _variant_row(base: dict, new_id: str, overrides: dict) -> dict:
    optimizer, row = dict(base["optimizer"]), {**base}
    for name, value in overrides.items():
        if name not in VARIANT_FIELDS:
            raise ValueError(f"{name}: not a field a variant can change "
                             f"({', '.join(VARIANT_FIELDS)})")
        try:
            value = VARIANT_FIELDS[name](value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: '{value}' is not a number") from None
        if value <= 0 and name != "momentum" or value < 0:
            raise ValueError(f"{name}: must be greater than 0")
        if name in ("epochs", "batch_size"):
            row[name] = value
        else:
            optimizer[name] = value
    extra = {**(base.get("extra") or {}), "variant_of": base["id"], "overrides": overrides}
    return {**row, "id": new_id, "figure_a_id": None, "reported_top1": None,
            "source": f"user: variant of {base['id']}", "optimizer": json.dumps(optimizer),
            "arch": json.dumps(row["arch"]), "scheduler": json.dumps(row["scheduler"]),
            "epochs": json.dumps(row["epochs"]), "extra": json.dumps(extra)}


def _subnet_row(row: dict, top1: dict[str, float]) -> dict:
    return {
        "id": row["id"], "depth": json.dumps(row["depth"]),
        "expansion": json.dumps(row["expansion"]), "width": json.dumps(row["width"]),
        "note": row.get("source"), "reported_top1": top1.get(row["id"]), "source": "paper",
    }
