"""Rich renderings of catalog rows and result tables (no computation here)."""

from __future__ import annotations

import json

from rich.table import Table

EPOCH_KINDS = ("pretrain", "team", "supernet", "train")  # they record epochs: a progress bar
SHARED_KINDS = ("study", "team", "supernet", "search")  # jobs of no one member
VAL_NAMES = {"pretrain": "k-NN", "team": "ensemble", "supernet": "max-net"}  # val_acc, if not val


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def info_table(facts: dict) -> Table:
    table = Table(show_header=False, box=None)
    for key, value in facts.items():
        table.add_row(f"[bold]{key}[/]", _fmt(value))
    return table


_SHORT = {"weight_decay": "wd", "momentum": "m", "alpha": "α", "step_epochs": "every",
          "gamma": "γ"}


def compact(params: dict) -> str:
    """`sgd lr=0.1 wd=0.0001 m=0.9`: a recipe in one short cell."""
    head = params.get("name", "")
    rest = " ".join(f"{_SHORT.get(k, k)}={v}" for k, v in params.items() if k != "name")
    return f"{head} {rest}".strip()


def models_table(rows: list[dict]) -> Table:
    table = Table(title="Models (Table i)")
    table.add_column("id", no_wrap=True)
    for col in ("family", "recipe", "optimizer", "schedule", "epochs"):
        table.add_column(col)
    table.add_column("batch", justify="right")
    table.add_column("top-1", justify="right", no_wrap=True)
    for r in rows:
        table.add_row(r["id"], r["family"], r["recipe"], compact(r["optimizer"]),
                      compact(r["scheduler"]), _fmt(r["epochs"]), _fmt(r["batch_size"]),
                      _fmt(r["reported_top1"]))
    return table


def subnets_table(rows: list[dict]) -> Table:
    table = Table(title="Subnetworks (Table ii)")
    for col in ("id", "depth", "expansion", "width", "reported top-1"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], _fmt(r["depth"]), _fmt(r["expansion"]), _fmt(r["width"]),
                      _fmt(r["reported_top1"]))
    return table


def detail_table(kind: str, row: dict) -> Table:
    table = Table(title=f"{kind} {row['id']}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in row.items():
        table.add_row(key, _fmt(value))
    return table


def plan_table(jobs: list[dict]) -> Table:
    table = Table(title="Plan")
    for col in ("kind", "member", "set", "key", "state"):
        table.add_column(col)
    for j in jobs:
        table.add_row(j["kind"], j["member"], j.get("val_set") or "", j["key"], j["state"])
    return table


def accuracy_table(rows: list[dict], sets: list[str]) -> Table:
    table = Table(title="Top-1 accuracy (%) per validation set")
    table.add_column("member", no_wrap=True)
    table.add_column("paper", justify="right", no_wrap=True, min_width=6)
    for name in sets:
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    table.add_column("time", justify="right", no_wrap=True)
    gpu = any((r.get("cost") or {}).get("gpu_hours") for r in rows)
    if gpu:
        table.add_column("GPU-h", justify="right")
    unfinished = any(r["status"] != "done" for r in rows)
    if unfinished:
        table.add_column("status")
    for r in rows:
        cells = ["—" if r["accuracy"][s] is None else f"{r['accuracy'][s]:.1f}" for s in sets]
        cost = r.get("cost") or {}
        cells.append(_short_duration(cost.get("wall_s")))
        if gpu:
            cells.append("—" if cost.get("gpu_hours") is None else f"{cost['gpu_hours']:.2f}")
        if unfinished:
            cells.append(r["status"] if r["status"] == "done" else f"[red]{r['status']}[/]")
        table.add_row(r["member"], _fmt(r["reported_top1"]), *cells)
    table.caption = ("paper: Figure A's top-1 on ImageNet at 224 px — a reference, not the same "
                     "task; time: the member's jobs, summed")
    return table


def _short_duration(seconds: float | None) -> str:
    """At most 4 characters (64s, 12m, 1.3h), so the accuracy table fits 80 columns."""
    if seconds is None:
        return "—"
    if seconds < 99.5:
        return f"{seconds:.0f}s"
    if seconds < 99.5 * 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h" if seconds < 9.95 * 3600 else f"{seconds / 3600:.0f}h"


def duration(seconds: float | None) -> str:
    """64 → '64s', 150 → '2m30s', 3720 → '1h02m'; None → '—' (short: tables fit 80 columns)."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{seconds}s" if seconds < 100 else f"{minutes}m{secs:02d}s"


def team_summary_table(rows: list[dict], consensus: str) -> Table:
    table = Table(title=f"Best team per set ({consensus} consensus)")
    for col in ("set", "acc %", "vs best", "mean gain", "beat best"):
        table.add_column(col, justify="left" if col == "set" else "right", no_wrap=True)
    table.add_column("best team")
    for r in rows:
        table.add_row(r["set"], f"{r['best_team_accuracy']:.1f}",
                      f"{r['gain_over_best_member']:+.1f}", f"{r['mean_vs_mean']:+.1f}",
                      f"{r['teams_beating_best_member']}/{r['teams']}", ", ".join(r["best_team"]))
    table.caption = ("vs best: over the team's best member; mean gain: vs_mean over all teams; "
                     "beat best: teams better than their best member")
    return table


def resilience_table(rows: list[dict], reference: str | None) -> Table:
    table = Table(title="Resilience per member")
    table.add_column("member", no_wrap=True)
    table.add_column("mean drop", justify="right")
    table.add_column("relative", justify="right")
    table.add_column(f"mCE vs {reference}" if reference else "mCE vs ref.", justify="right")
    table.add_column("mCE vs AlexNet", justify="right")
    for r in rows:
        table.add_row(r["member"], _num(r["mean_drop"], "{:.1f}"),
                      _num(r["mean_relative_drop"], "{:.1f} %"), _num(r["mce"], "{:.2f}"),
                      _num(r["mce_alexnet"], "{:.2f}"))
    table.caption = ("drop: clean minus corrupted top-1, in points; mCE: mean over corruptions of "
                     "Σ_s error / Σ_s reference error (AlexNet: ImageNet-C's constants)")
    return table


def sweep_display(rows: list[dict], set_key: str = "set") -> list[dict]:
    """The sweep's rows as shown: the jointly trained ensembles', then each independently
    trained team once with its sets together (the rows repeat it for every joint team
    of its size)."""
    separate: dict[str, dict] = {}
    for r in rows:
        if r["lam"] is None:
            separate.setdefault(r["team"], {}).setdefault((r[set_key], r.get("consensus")), r)
    return [r for r in rows if r["lam"] is not None] + [
        r for sets in separate.values() for r in sets.values()]


def sweep_table(rows: list[dict], improvement: str) -> Table:
    """The λ sweep: jointly trained ensembles, then independently trained teams of the
    same size, per set (rows of `report.sweep_summary`)."""
    table = Table(title="λ sweep: jointly trained ensembles vs independently trained teams")
    for col in ("ensemble", "loss", "set", "acc %", improvement, "drop", "disagree", "attrib",
                "activ", "gncl"):
        table.add_column(col, justify="left" if col in ("ensemble", "loss", "set") else "right",
                         no_wrap=True)
    previous = None
    for r in sweep_display(rows):
        name = r["team"] if r["team"] != previous else ""
        previous = r["team"]
        table.add_row(name, r["loss"] if name else "", r["set"], f"{100 * r['accuracy']:.1f}",
                      _num(r["gain"] and 100 * r["gain"], "{:+.1f}"),
                      _num(r["drop"] and 100 * r["drop"], "{:.1f}"),
                      *[_num(r[m], "{:.3f}") for m in ("label_disagreement",
                        "attribution_diversity", "activation_diversity", "gncl_diversity")])
    table.caption = (f"name[λ]: trained jointly; separate: trained independently. {improvement}"
                     " and drop (clean minus set) in points")
    return table


def table_ii_text(config: dict | None) -> str | None:
    """`depth / width / expansion` of a Table ii entry; None for a point it cannot write."""
    return f"{config['depth']} / {config['width']} / {config['expansion']}" if config else None


def front_table(rows: list[dict]) -> Table:
    """The search's Pareto front (catalog.front rows), smallest first."""
    table = Table(title="Sub-network search: Pareto front (accuracy vs MACs)")
    for col in ("#", "acc %", "MMACs", "params M"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("Table ii (depth / width / expansion)")
    for r in rows:
        config = table_ii_text(r["table_ii"]) or (
            "— (depth below Table ii's base; native: "
            f"{r['subnet']['depths']} / {r['subnet']['widths']})")
        table.add_row(str(r["idx"]), f"{100 * r['accuracy']:.1f}", f"{r['macs'] / 1e6:.1f}",
                      f"{r['params'] / 1e6:.2f}", config)
    table.caption = "save a point as a catalog sub-network: ensui catalog save-subnet EXP INDEX NAME"
    return table


def _num(value: float | None, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


def figure_b_table(figure: dict, improvement: str) -> Table:
    """Metrics × sets correlation with ensemble improvement; sign by colour and by text."""
    table = Table(title=f"Figure B: {figure['statistic']} of each metric with {improvement}")
    table.add_column("metric", no_wrap=True)
    for name in figure["sets"]:
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    for metric, values in zip(figure["metrics"], figure["values"]):
        table.add_row(metric, *[_signed(v) for v in values])
    return table


def _signed(value: float | None) -> str:
    if value is None:
        return "—"
    colour = "green" if value > 0 else "red" if value < 0 else "default"
    return f"[{colour}]{value:+.2f}[/]"


def layer_cka_table(result: dict) -> Table:
    """Rows: member a's layers; columns: member b's; cells: CKA (0 unrelated … 1 same)."""
    table = Table(title=f"Layer CKA: {result['member_a']} × {result['member_b']} on "
                        f"{result['set']} ({result['samples']} images)")
    table.add_column(result["member_a"], no_wrap=True)
    for name in result["cols"]:
        table.add_column(name, justify="right", no_wrap=True)
    for name, row in zip(result["rows"], result["values"]):
        table.add_row(name, *["—" if v != v else f"{v:.2f}" for v in row])
    return table


def _ago(now: float, then: float | None) -> str:
    return "—" if then is None else duration(now - then)


def jobs_table(rows: list[dict], now: float) -> Table:
    """The queue: state, device, progress, elapsed time and cost per job."""
    table = Table(title="Jobs (newest first)")
    for col in ("key", "kind", "member", "set", "state", "device", "progress", "elapsed",
                "CPU", "peak MB", "error"):
        table.add_column(col, no_wrap=col not in ("error",), overflow="fold")
    for r in rows:
        elapsed = (r["ended"] or now) - r["began"] if r.get("began") else None
        progress = f"{r['epoch'] or 0}/{r['epochs']}" if r["kind"] in EPOCH_KINDS and r.get(
            "epochs") else ""
        colour = {"failed": "red", "cancelled": "yellow", "running": "cyan",
                  "done": "green"}.get(r["status"], "default")
        table.add_row(r["key"][:10], " ".join(w for w in (r["kind"], r.get("method")) if w),
                      r["member"], r.get("val_set") or "", f"[{colour}]{r['status']}[/]",
                      r.get("device") or "", progress, duration(elapsed),
                      duration(r.get("cpu_s")),
                      "—" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.0f}",
                      (r.get("error") or "")[:80])
    return table


def workers_table(rows: list[dict], now: float) -> Table:
    table = Table(title="Workers")
    for col in ("id", "pid", "lane", "state", "job", "heartbeat", "log"):
        table.add_column(col, no_wrap=col != "log", overflow="fold")
    for r in rows:
        table.add_row(r["id"], str(r["pid"]), r["lane"], r["state"], (r.get("job") or "")[:10],
                      f"{_ago(now, r['heartbeat'])} ago", r.get("log") or "")
    return table


def status_view(data: dict, now: float):
    """`ensui status`: counts per state, then workers and running jobs."""
    from rich.console import Group

    order = ("queued", "running", "done", "failed", "cancelled")
    counts = "  ".join(f"{s} {data['jobs'].get(s, 0)}" for s in order)
    parts = [f"jobs: {counts}", workers_table(data["workers"], now)]
    if data["running"]:
        parts.append(jobs_table(data["running"], now))
    return Group(*parts)
