"""The app's responsiveness with a big catalog against an empty one, same process.

Big: 10,000 experiments and 100,000 team rows (spread over ten studies). For each
catalog, through Textual's Pilot at 120 × 40:
- first paint: from creating the app to its first screen drawn with the catalog rows;
- key response: a cursor move (`j`) on the catalog table until the screen is updated,
  and switching to History (`5`) until its first page of experiments is shown.

Prints the times and the ratios big / empty (targets: first paint under 1 s and under
2× the empty case; key response under 100 ms).

    python bench/tui_latency.py [--experiments 10000 --teams 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from textual.widgets import DataTable

from ensui.app import EnsuiApp
from ensui.catalog import Catalog
from ensui.home import Home


def fill(home: Home, experiments: int, teams: int) -> None:
    catalog = Catalog(home.catalog)
    for i in range(experiments):
        catalog.record_experiment(f"{i:020d}", f"study-{i}", "study.yaml", "name: x\n", [])
    per_study = teams // 10
    for study in range(10):
        rows = [{"team": (f"m{k}", f"n{k}"), "size": 2, "consensus": "average",
                 "accuracy": 0.5, "nll": 1.0, "average_accuracy": 0.4, "vs_mean": 0.1,
                 "vs_best": 0.05, "eir": 0.1, "nll_gain": 0.1, "label_disagreement": 0.2}
                for k in range(per_study)]
        catalog.record_study(f"{study:020d}", {"clean": rows}, [], {}, [], [], [])
    catalog.close()


async def _until(pilot, ready, timeout: float = 30.0) -> None:
    deadline = time.perf_counter() + timeout
    while not ready():
        if time.perf_counter() > deadline:
            raise TimeoutError("the screen did not update")
        await pilot.pause(0.005)


def _rows(app) -> int:
    tables = app.screen.query(DataTable)
    return max((t.row_count for t in tables), default=0)


async def measure(home: Home) -> dict[str, float]:
    began = time.perf_counter()
    app = EnsuiApp(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: _rows(app) > 0)
        first = time.perf_counter() - began
        table = app.screen.query(DataTable).first()
        row = table.cursor_row
        start = time.perf_counter()
        await pilot.press("j")
        await _until(pilot, lambda: table.cursor_row != row)
        cursor = time.perf_counter() - start
        start = time.perf_counter()
        await pilot.press("5")
        await _until(pilot, lambda: app.current_mode == "history" and _rows(app) > 0)
        history = time.perf_counter() - start
    return {"first paint": first, "cursor key": cursor, "history key": history}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=10_000)
    ap.add_argument("--teams", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        empty, big = Home(Path(tmp) / "empty"), Home(Path(tmp) / "big")
        Catalog(empty.catalog).close()
        fill(big, args.experiments, args.teams)
        fill(empty, 1, 10)  # one experiment, so History has a row to show
        asyncio.run(measure(empty))  # warm imports and caches before timing either
        times = {"empty": [], "big": []}
        for _ in range(3):  # alternate, then keep each case's fastest run
            for name, home in (("big", big), ("empty", empty)):
                times[name].append(asyncio.run(measure(home)))
        times = {name: {k: min(run[k] for run in runs) for k in runs[0]}
                 for name, runs in times.items()}
    print(f"{args.experiments:,} experiments, {args.teams:,} team rows vs an empty catalog")
    for name in times["empty"]:
        e, b = times["empty"][name], times["big"][name]
        print(f"  {name:<12} empty {1000 * e:7.1f} ms   big {1000 * b:7.1f} ms   "
              f"big/empty {b / e:5.2f}")
    first, keys = times["big"]["first paint"], max(times["big"]["cursor key"],
                                                   times["big"]["history key"])
    print(f"targets: first paint {first:.2f} s (< 1 s, < 2x empty: "
          f"{first / times['empty']['first paint']:.2f}x); slowest key {1000 * keys:.0f} ms "
          "(< 100 ms)")


if __name__ == "__main__":
    main()
