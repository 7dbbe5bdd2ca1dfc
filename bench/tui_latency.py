"""The app's responsiveness with a big catalog against an empty one, same process.

Big: 10,000 experiments and 100,000 team rows (spread over ten studies). For each
catalog, at 120 × 40 (Textual's headless driver), timed to the first frame written
that shows the change:
- first paint: from creating the app to its first screen drawn with the catalog rows;
- key response: a cursor move (`j`) on the catalog table, and the switch to every mode
  (`2` … `5`, then `1`), History until its first page of experiments is shown.

The keys are pressed once the app has built its other screens (within a second of the
first paint); a key pressed while it builds one waits for that build (up to ~0.2 s).

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

from textual import events
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


class PaintClock:
    """Times from a key sent to the terminal driver to the first frame written that shows
    its effect. Unlike Pilot.press, which also waits for every background thread to go
    idle, this is what a person sees."""

    def __init__(self, app):
        self.app, self.frames = app, []
        display = app._display

        def timed(screen, renderable):
            display(screen, renderable)
            self.frames.append((time.perf_counter(), screen))

        app._display = timed

    async def until(self, ready, since: float, timeout: float = 30.0) -> float:
        """Seconds from `since` to the first frame after which `ready()` holds."""
        deadline = time.perf_counter() + timeout
        while True:
            shown = [t for t, screen in self.frames if t >= since and screen is self.app.screen]
            if shown and ready():
                return shown[-1] - since
            if time.perf_counter() > deadline:
                raise TimeoutError("the screen did not update")
            await asyncio.sleep(0.001)

    async def key(self, key: str, ready) -> float:
        await asyncio.sleep(0.3)  # let the previous screen settle
        self.frames.clear()
        since = time.perf_counter()
        self.app._driver.send_message(events.Key(key, key))
        return await self.until(ready, since)


def _rows(app) -> int:
    tables = app.screen.query(DataTable)
    return max((t.row_count for t in tables), default=0)


MODE_KEYS = (("2", "builder"), ("3", "jobs"), ("4", "results"), ("5", "history"),
             ("1", "catalog"))


async def measure(home: Home) -> dict[str, float]:
    began = time.perf_counter()
    app = EnsuiApp(home)
    clock = PaintClock(app)
    async with app.run_test(size=(120, 40)):
        first = await clock.until(lambda: _rows(app) > 0, began)
        await asyncio.sleep(1.0)  # the app builds the other screens after its first paint
        table = app.screen.query(DataTable).first()
        row = table.cursor_row
        times = {"first paint": first,
                 "cursor key": await clock.key("j", lambda: table.cursor_row != row)}
        for key, mode in MODE_KEYS:
            needs_rows = mode in ("history", "catalog")
            times[f"{mode} key"] = await clock.key(
                key, lambda m=mode, r=needs_rows: app.current_mode == m and (
                    not r or _rows(app) > 0))
    return times


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
    first = times["big"]["first paint"]
    keys = max(v for k, v in times["big"].items() if k != "first paint")
    print(f"targets: first paint {first:.2f} s (< 1 s, < 2x empty: "
          f"{first / times['empty']['first paint']:.2f}x); slowest key {1000 * keys:.0f} ms "
          "(< 100 ms)")


if __name__ == "__main__":
    main()
