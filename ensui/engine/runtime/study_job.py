"""The study as a job: computed from the cached arrays once the experiment's other jobs
have ended, and recorded in the catalog, so the app shows it whoever ran the jobs."""

from __future__ import annotations

from pathlib import Path

from ensui.catalog import Catalog
from ensui.engine.plan import make_plan
from ensui.engine.spec import Spec
from ensui.engine.study import Study, run_study
from ensui.home import Home


def record_study(spec: Spec, spec_path: Path, catalog: Catalog, home: Home) -> Study | None:
    """Run the experiment's study and replace it in the catalog; None with fewer than two
    members evaluated on every set."""
    plan = make_plan(spec, catalog, spec_path)
    study = run_study(spec, plan, catalog, home)
    if study is not None:
        catalog.record_study(plan.experiment_id, study.team_rows, study.correlations,
                             study.matrices, study.members, study.resilience,
                             study.corruption_errors, study.sweep)
    return study
