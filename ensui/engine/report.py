"""Tables of results as plain data, for the terminal, `--json` and the app alike."""

from __future__ import annotations

from ensui.catalog import Catalog
from ensui.engine.plan import Plan
from ensui.render import SHARED_KINDS


def accuracy_table(plan: Plan, catalog: Catalog, sets: list[str]) -> list[dict]:
    """One row per member: model, reported top-1, status, and accuracy (%) per set."""
    rows: dict[str, dict] = {}
    for job in plan.jobs:
        if job.kind in SHARED_KINDS:  # the experiment's or a team's, no one member's
            continue
        if job.member not in rows:  # one catalog look-up per member, not per job
            rows[job.member] = {
                "member": job.member, "model_id": job.model_id,
                "reported_top1": catalog.member_row(job.model_id)["reported_top1"],
                "status": "done", "accuracy": {s: None for s in sets}, "errors": [],
                "cost": dict.fromkeys(COST, None)}
        row = rows[job.member]
        state = catalog.job(job.key)
        _add_cost(row["cost"], state or {})
        if state is None or state["status"] != "done":
            row["status"] = state["status"] if state else "queued"
            if state and state.get("error"):
                row["errors"].append(f"{job.kind} {job.params.get('val_set', '')}: {state['error']}".strip())
            continue
        if job.kind == "evaluate":
            result = catalog.result(job.key)
            row["accuracy"][job.params["val_set"]] = round(100 * result["accuracy"], 3)
    return list(rows.values())


COST = ("wall_s", "cpu_s", "peak_rss_mb", "peak_gpu_mb", "gpu_hours")


def _add_cost(total: dict, job: dict) -> None:
    """A member's cost: times and GPU-hours summed over its jobs, peaks the largest."""
    for name in COST:
        value = job.get(name)
        if value is None:
            continue
        old = total[name]
        total[name] = value if old is None else (
            max(old, value) if name.startswith("peak") else old + value)


def team_summary(team_rows: dict[str, list[dict]], consensus: str) -> list[dict]:
    """Per set: the best team under `consensus`, its gain over its best member, and the
    mean improvement over all teams."""
    summary = []
    for set_name, rows in team_rows.items():
        chosen = [r for r in rows if r["consensus"] == consensus]
        best = max(chosen, key=lambda r: (r["accuracy"], -r["size"]))
        summary.append({
            "set": set_name, "teams": len(chosen), "best_team": list(best["team"]),
            "best_team_accuracy": round(100 * best["accuracy"], 3),
            "gain_over_best_member": round(100 * best["vs_best"], 3),
            "mean_vs_mean": round(100 * sum(r["vs_mean"] for r in chosen) / len(chosen), 3),
            "teams_beating_best_member": sum(r["vs_best"] > 0 for r in chosen),
        })
    return summary


SWEEP_METRICS = ("label_disagreement", "attribution_diversity", "activation_diversity",
                 "gncl_diversity")


def sweep_summary(rows: list[dict], consensus: str, improvement: str) -> list[dict]:
    """The λ sweep under `consensus`: per ensemble and set, accuracy, its `improvement`,
    the drop from clean and the diversity metrics (None where not computed)."""
    return [{"group": r["group"], "loss": r["loss"], "lam": r["lam"], "team": r["team"],
             "set": r["set"], "accuracy": r["accuracy"], "gain": r.get(improvement),
             "drop": r["drop"], **{m: r.get(m) for m in SWEEP_METRICS}}
            for r in rows if r["consensus"] == consensus]


def resilience_summary(drops: list[dict], corruption_errors: list[dict],
                       members: list[str]) -> list[dict]:
    """Per member: mean accuracy drop from clean over the corrupted sets, and mCE (mean
    corruption error over corruptions) against the reference member and AlexNet."""
    rows = []
    for member in members:
        own = [d for d in drops if d["name"] == member]
        ce = [r for r in corruption_errors if r["member"] == member]
        rows.append({
            "member": member,
            "mean_drop": _mean([100 * d["drop"] for d in own]),
            "mean_relative_drop": _mean([100 * d["relative_drop"] for d in own
                                         if d["relative_drop"] is not None]),
            "mce": _mean([r["ce"] for r in ce if r["ce"] is not None]),
            "mce_alexnet": _mean([r["ce_alexnet"] for r in ce if r["ce_alexnet"] is not None]),
        })
    return rows


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None
