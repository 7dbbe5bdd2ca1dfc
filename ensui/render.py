"""Rich renderings of catalog rows and result tables (no computation here)."""

from __future__ import annotations

import json

from rich.table import Table


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


def _optimizer(opt: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in opt.items() if k != "name")


def models_table(rows: list[dict]) -> Table:
    table = Table(title="Models (Table i)")
    for col in ("id", "family", "recipe", "optimizer", "parameters", "scheduler", "epochs",
                "batch", "reported top-1"):
        table.add_column(col, justify="right" if col in ("batch", "reported top-1") else "left")
    for r in rows:
        sched = r["scheduler"]
        table.add_row(r["id"], r["family"], r["recipe"], r["optimizer"]["name"],
                      _optimizer(r["optimizer"]),
                      " ".join(f"{k}={v}" for k, v in sched.items()),
                      _fmt(r["epochs"]), _fmt(r["batch_size"]), _fmt(r["reported_top1"]))
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
    table.add_column("member")
    table.add_column("paper top-1", justify="right")
    for name in sets:
        table.add_column(name, justify="right")
    table.add_column("status")
    for r in rows:
        cells = [_fmt(r["accuracy"][s]) if r["accuracy"][s] is None else f"{r['accuracy'][s]:.1f}"
                 for s in sets]
        status = r["status"] if r["status"] == "done" else f"[red]{r['status']}[/]"
        table.add_row(r["member"], _fmt(r["reported_top1"]), *cells, status)
    table.caption = "paper top-1: Figure A, ImageNet at 224 px — a reference, not the same task"
    return table
