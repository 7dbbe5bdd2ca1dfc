"""The job runtime's overhead: a study's jobs run through the queue by a worker process
vs the same jobs run in one plain loop in this process, same machine, same threads.

The study: N SqueezeNet members (different seeds) trained for E epochs on the embedded
digits (each training job about 10 s on 2 cores) and evaluated on the clean set. The
runtime path is what `ensui headless` does: queue the plan in the catalog, start one
`ensui worker` process in its own session, follow the catalog until the experiment is
done; it pays the worker's start (Python + torch imports), claims, heartbeats, per-job
logs and cost records. The plain loop calls each job's work directly, with nothing
recorded. Prints both wall times and their ratio (target ≤ 1.10 for jobs of ≥ 10 s).

    python bench/runtime_overhead.py [--members 6 --epochs 9]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import textwrap
import time
from pathlib import Path

import torch  # noqa: E402

from ensui.catalog import Catalog  # noqa: E402
from ensui.engine.plan import make_plan  # noqa: E402
from ensui.engine.runtime import pool  # noqa: E402
from ensui.engine.runtime.work import JobWork  # noqa: E402
from ensui.engine.spec import load_spec  # noqa: E402
from ensui.home import Home  # noqa: E402


class _Nothing:
    """A recorder that records nothing: the plain loop's bookkeeping is none."""

    def epoch(self, *args) -> None:
        pass

    def result(self, *args) -> None:
        pass


def write_spec(folder: Path, members: int, epochs: int) -> Path:
    lines = "\n".join(f"  - {{model: SqueezeNet, name: m{i}, seed: {i}}}" for i in range(members))
    path = folder / "overhead.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: overhead
        training: {{epochs: {epochs}, batch_size: 64}}
        validation: {{sets: [clean]}}
        analysis: {{enabled: false}}
        members:
        """) + lines + "\n")
    return path


def plain_loop(spec_path: Path, home: Home) -> float:
    spec = load_spec(spec_path)
    plan = make_plan(spec, Catalog.memory(), spec_path)
    params = {j.key: j.params for j in plan.jobs}
    start = time.perf_counter()
    work = JobWork(spec, home, _Nothing(), torch.device("cpu"), params.__getitem__)
    for job in plan.jobs:
        work.run(job.key, job.kind, job.params, job.member, job.model_id)
    return time.perf_counter() - start


def through_workers(spec_path: Path, home: Home) -> float:
    spec = load_spec(spec_path)
    start = time.perf_counter()
    catalog = Catalog(home.catalog)
    plan = make_plan(spec, catalog, spec_path)
    catalog.record_experiment(plan.experiment_id, spec.name, str(spec_path),
                              spec_path.read_text(), [(j.key, j.member) for j in plan.jobs])
    catalog.enqueue(plan.experiment_id, plan.jobs)
    procs = pool.start(home, pool.lanes(cpu=1, gpus=[]), experiment=plan.experiment_id,
                       exit_when_idle=True)
    while True:
        progress = catalog.experiment_progress(plan.experiment_id)
        if not progress.get("queued") and not progress.get("running"):
            break
        time.sleep(0.2)
    elapsed = time.perf_counter() - start
    for p in procs:
        p.wait()
    if progress.get("failed"):
        raise SystemExit(f"{progress['failed']} job(s) failed; see {home.root / 'logs'}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=9)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)  # what the one CPU worker gets
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec_path = write_spec(root, args.members, args.epochs)
        plain = plain_loop(spec_path, Home(root / "plain"))
        queued = through_workers(spec_path, Home(root / "queued"))
    jobs = 2 * args.members
    print(f"{args.members} members × {args.epochs} epochs ({jobs} jobs: {args.members} "
          f"trainings of ~{plain / args.members:.0f} s with their evaluations)")
    print(f"  plain loop     {plain:7.1f} s")
    print(f"  queue+worker   {queued:7.1f} s  (+{queued - plain:.1f} s, "
          f"{(queued - plain) / jobs:.2f} s per job)")
    print(f"overhead ratio: {queued / plain:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
