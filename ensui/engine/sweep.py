"""The λ sweep: every jointly trained ensemble (recipe ``ncl``, one per team × λ) beside
the independently trained teams of the same size, per validation set (methods.md §10).

Rows carry what a team row carries (accuracy, improvements, every diversity metric,
the generalized-NCL diversity), plus the team spec's name (`group`), its loss and λ
(None for an independently trained team, whose `loss` is ``separate``), and the drop in
accuracy from the clean set (resilience; None on the clean set or without it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ensui.engine.spec import Spec

SEPARATE = "separate"  # the loss column of an independently trained team


def sweep_rows(spec: Spec, joint: Sequence[tuple], team_rows: dict[str, list[dict]],
               score: Callable[[list[str], str], list[dict]]) -> list[dict]:
    """`joint`: (team spec, λ, member labels) of the joint ensembles with outputs on every
    set; `team_rows`: the study's rows of the independent members' teams, per set;
    `score(labels, set)`: the team rows of one joint ensemble on one set."""
    rows = []
    for team, lam, labels in joint:
        for set_name in spec.validation.sets:
            rows += [{**row, "group": team.name, "loss": team.loss, "lam": lam,
                      "team": team.team_label(lam), "members": list(labels), "set": set_name}
                     for row in score(labels, set_name)]
    for team in [t for t in spec.joint if any(t is j[0] for j in joint)]:
        size = len(team.models)
        rows += [{**row, "group": team.name, "loss": SEPARATE, "lam": None,
                  "team": " + ".join(row["team"]), "members": list(row["team"]),
                  "set": set_name}
                 for set_name, set_rows in team_rows.items()
                 for row in set_rows if row["size"] == size]
    return _with_drops(rows)


def _with_drops(rows: list[dict]) -> list[dict]:
    """Each row's accuracy drop from the same ensemble's clean accuracy."""
    clean = {(r["group"], r["team"], r["consensus"]): r["accuracy"]
             for r in rows if r["set"] == "clean"}
    for row in rows:
        base = clean.get((row["group"], row["team"], row["consensus"]))
        row["drop"] = None if row["set"] == "clean" or base is None else base - row["accuracy"]
    return rows
