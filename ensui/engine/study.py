"""The ensemble study of an experiment, from its cached member outputs: teams scored
under each consensus, prediction diversity, the correlation of every metric with
ensemble improvement (the paper's Figure B), and resilience to corruption.

Nothing here runs a model: every number comes from the outputs that evaluation cached,
so the study is cheap to recompute with other choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ensui.catalog import Catalog
from ensui.engine import analysis, probe_cache, sweep
from ensui.engine.diversity import prediction_diversity, representation
from ensui.engine.diversity.gncl import gncl_team_diversity
from ensui.engine.ensembles import MemberOutputs, score_teams, teams
from ensui.engine.evaluate import load_outputs
from ensui.engine.plan import Plan
from ensui.engine.spec import Spec
from ensui.home import Home


@dataclass
class Study:
    members: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # member -> why it is left out
    team_rows: dict[str, list[dict]] = field(default_factory=dict)  # per set
    matrices: dict[str, dict] = field(default_factory=dict)  # per set: metric -> (M, M)
    correlations: list[dict] = field(default_factory=list)
    figure_b: dict | None = None
    resilience: list[dict] = field(default_factory=list)
    corruption_errors: list[dict] = field(default_factory=list)  # member x corruption CE
    notes: list[str] = field(default_factory=list)  # metrics left out, and why
    sweep: list[dict] = field(default_factory=list)  # jointly trained teams (`sweep`)


def run_study(spec: Spec, plan: Plan, catalog: Catalog, home: Home) -> Study | None:
    """The study over members evaluated on every set; None when fewer than two are and
    no jointly trained team was."""
    outputs, skipped = _collect_outputs(spec, plan, catalog, home)
    members = [m.label for m in spec.members if m.label not in skipped]
    joint = [(team, lam, labels) for team, lam, labels in spec.joint_members()
             if not any(label in skipped for label in labels)]
    if len(members) < 2 and not joint:
        return None
    cfg = spec.analysis
    study = Study(members, skipped)
    probes = _collect_probes(plan, catalog, home)
    gncl_sizes = {len(team.models) for team, _, _ in joint}
    team_errors: dict[str, dict] = {}
    for set_name in spec.validation.sets if len(members) >= 2 else ():
        per_member = MemberOutputs.from_outputs({m: outputs[m][set_name] for m in members})
        team_list = teams(members, _sizes(cfg.team_sizes, len(members)), cfg.teams)
        rows, study.matrices[set_name], missing = _score(
            per_member, team_list, probes, set_name, cfg, gncl_sizes)
        study.notes += [f"{metric} on {set_name}: a member's cached arrays are missing"
                        for metric in missing]
        study.team_rows[set_name] = rows
        if set_name != "clean":
            _add_team_part_errors(team_errors, per_member, team_list, outputs[members[0]][set_name].ids)
    if study.team_rows:
        study.correlations = analysis.correlation_study(
            study.team_rows, cfg.metrics, cfg.improvement, n_boot=cfg.bootstrap, seed=cfg.seed)
        study.figure_b = analysis.figure_b(study.correlations, consensus=cfg.consensus[0])
        study.resilience = _resilience(study, outputs, spec)
        study.corruption_errors = _corruption_errors(study.members, outputs, spec, team_errors)

    def score_joint(labels: list[str], set_name: str) -> list[dict]:
        per_member = MemberOutputs.from_outputs({m: outputs[m][set_name] for m in labels})
        team = [tuple(range(len(labels)))]
        return _score(per_member, team, probes, set_name, cfg, {len(labels)})[0]

    study.sweep = sweep.sweep_rows(spec, joint, study.team_rows, score_joint)
    return study


def _score(per_member: MemberOutputs, team_list, probes: dict, set_name: str, cfg,
           gncl_sizes: set[int]) -> tuple[list[dict], dict, list[str]]:
    """Team rows (every consensus, every diversity metric), the pairwise matrices, and the
    attribution or activation metrics left out because a member's arrays are missing.
    The generalized-NCL diversity is computed for teams of `gncl_sizes`, or for every
    team when it is a Figure B metric (it costs a pass over the outputs per team)."""
    ensemble_rows = score_teams(per_member, team_list, cfg.consensus)
    diversity_rows, matrices = prediction_diversity(per_member, team_list)
    members = list(per_member.names)
    found = _probe_matrices(probes, members, set_name, cfg)
    for metric, matrix in found.items():
        matrices[metric] = matrix
        for row, value in zip(diversity_rows, representation.team_means(matrix, team_list)):
            row[metric] = value
    every = "gncl_diversity" in cfg.metrics
    chosen = [i for i, t in enumerate(team_list) if every or len(t) in gncl_sizes]
    values = gncl_team_diversity(per_member, [team_list[i] for i in chosen])
    for i, value in zip(chosen, values):
        diversity_rows[i]["gncl_diversity"] = value
    missing = [metric for metric in cfg.extra_metrics() if metric not in found]
    return analysis.team_table(ensemble_rows, diversity_rows), matrices, missing


def _sizes(sizes, count: int):
    """Default sizes shrink to the members there are (a spec that names sizes is checked)."""
    return "all" if sizes == "all" else [s for s in sizes if s <= count] or [count]


def _collect_outputs(spec: Spec, plan: Plan, catalog: Catalog, home: Home):
    """{member: {set: Outputs}} and the members left out, with the reason."""
    outputs: dict[str, dict] = {label: {} for label in spec.all_labels()}
    skipped: dict[str, str] = {}
    for job in plan.of_kind("evaluate"):
        row = catalog.job(job.key)
        loaded = load_outputs(home.outputs / job.key, job.params["store"]) if (
            row and row["status"] == "done") else None
        if loaded is None:
            skipped.setdefault(job.member, f"no outputs on {job.params['val_set']}")
        else:
            outputs[job.member][job.params["val_set"]] = loaded
    return outputs, skipped


def _collect_probes(plan: Plan, catalog: Catalog, home: Home) -> dict[str, dict]:
    """{"activations" or the attribution method: {set: {member: arrays}}} of done jobs."""
    probes: dict[str, dict] = {}
    for job in plan.jobs:
        if job.kind not in probe_cache.ARRAYS:
            continue
        row = catalog.job(job.key)
        arrays = probe_cache.load(home.outputs / job.key, job.kind) if (
            row and row["status"] == "done") else None
        if arrays is not None:
            name = job.params.get("method", job.kind)
            probes.setdefault(name, {}).setdefault(job.params["val_set"], {})[job.member] = arrays
    return probes


def _probe_matrices(probes: dict, members: list[str], set_name: str, cfg) -> dict:
    """Attribution and activation diversity matrices, for those every member has."""
    def complete(name: str) -> dict | None:
        per_member = probes.get(name, {}).get(set_name, {})
        return per_member if all(m in per_member for m in members) else None

    matrices = {}
    if cfg.activation.enabled and (found := complete("activations")):
        matrices["activation_diversity"] = representation.activation_matrix(
            found, members, cfg.activation)
    if cfg.attribution.enabled:
        methods = cfg.attribution.methods
        for method in methods:
            if found := complete(method):
                matrix = representation.attribution_matrix(found, members, cfg.attribution)
                if method == methods[0]:
                    matrices["attribution_diversity"] = matrix
                if len(methods) > 1:
                    matrices[f"attribution_diversity:{method}"] = matrix
    return matrices


def _resilience(study: Study, outputs: dict, spec: Spec) -> list[dict]:
    """Accuracy drop from clean per member and per team (first consensus), per set."""
    if "clean" not in spec.validation.sets:
        return []
    accuracy: dict[str, dict[str, float]] = {}
    for member in study.members:
        accuracy[member] = {s: float((o.values.argmax(1) == o.labels).mean())
                            for s, o in outputs[member].items()}
    first = spec.analysis.consensus[0]
    for set_name, rows in study.team_rows.items():
        for row in rows:
            if row["consensus"] == first:
                accuracy.setdefault(" + ".join(row["team"]), {})[set_name] = row["accuracy"]
    return analysis.accuracy_drops(accuracy)


def _part_errors(per_set: dict) -> dict[str, dict[int, float]]:
    """Top-1 error per (corruption, severity), read from the sample ids of cached outputs."""
    errors: dict[str, dict[int, float]] = {}
    for set_name, out in per_set.items():
        if set_name != "clean":
            _split_by_part(out.values.argmax(1) != out.labels, out.ids, errors)
    return errors


def _split_by_part(wrong: np.ndarray, ids, errors: dict) -> None:
    """Add the error of each (corruption, severity) part, named by the ids' prefixes."""
    parts = np.array(["/".join(i.split("/")[:2]) for i in ids])
    for part in np.unique(parts):
        corruption, severity = part.split("/")
        errors.setdefault(corruption, {})[int(severity)] = float(wrong[parts == part].mean())


def _add_team_part_errors(errors: dict, per_member: MemberOutputs, team_list, ids) -> None:
    """Per team, the error of its averaged probabilities on each part (the paper's consensus)."""
    for team in team_list:
        name = " + ".join(per_member.names[i] for i in team)
        wrong = per_member.probs[list(team)].mean(0).argmax(1) != per_member.labels
        _split_by_part(wrong, ids, errors.setdefault(name, {}))


def _corruption_errors(members: list[str], outputs: dict, spec: Spec,
                       team_errors: dict) -> list[dict]:
    """CE per member and per team ("a + b", averaged probabilities) and corruption,
    against the reference member and, on released ImageNet-C data only, against
    ImageNet-C's AlexNet constants (which mean nothing for other data)."""
    errors = {m: _part_errors(outputs[m]) for m in members} | team_errors
    reference = spec.analysis.reference_member
    released = spec.validation.source == "imagenet_c"
    rows = []
    for name, own in errors.items():
        vs_ref = analysis.corruption_errors(own, errors[reference]) if reference else {}
        known = {c: e for c, e in own.items() if c in analysis.ALEXNET_ERRORS}
        vs_alexnet = analysis.alexnet_corruption_errors(known) if released else {}
        rows += [{"member": name, "corruption": c, "ce": vs_ref.get(c),
                  "reference": reference if c in vs_ref else None,
                  "ce_alexnet": vs_alexnet.get(c)} for c in own]
    return rows
