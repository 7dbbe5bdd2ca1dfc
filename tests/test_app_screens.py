"""The jobs, results and history screens and the heatmap widget, driven with Pilot over a
small fixed catalog written through the catalog's public methods (no training): keys
pressed, then screen state and catalog rows checked."""

import asyncio
import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
from textual.app import App
from textual.widgets import DataTable
from textual.worker import WorkerCancelled

from ensui.app import EnsuiApp
from ensui.catalog import Catalog
from ensui.engine.artifacts import save_array
from ensui.engine.plan import Job
from ensui.home import Home
from ensui.screens.drilldown import correlation_points, correlation_text
from ensui.screens.heatmap import Heatmap, scale_colour, window
from ensui.screens.results import team_view
from ensui.screens.views import load_view, save_view, views_path

EXP, EXP2 = "e1" + "0" * 18, "e2" + "0" * 18
MODELS = {"A": "SqueezeNet", "B": "MNASNET_1", "C": "ResNext50_16.4", "D": "deit_tiny_p16_224",
          "E": "SqueezeNet_512"}
SETS = ("clean", "noise")
N = 64
EPOCHS = 4
SIZES = [(80, 24), (120, 40)]


# -- the fixed catalog ---------------------------------------------------------------------

def _train(m: str) -> Job:
    return Job(f"train-{m}", "train", m, MODELS[m], {"epochs": EPOCHS, "member": m})


def _eval(m: str, s: str, suffix: str = "") -> Job:
    return Job(f"eval-{m}-{s}{suffix}", "evaluate", m, MODELS[m],
               {"train_key": f"train-{m}", "val_set": s, "store": "logits", "n": suffix},
               depends=f"train-{m}")


def _claim(catalog: Catalog, key: str) -> None:
    assert catalog.run_now(key)
    assert catalog.claim_job("w1", "cpu")["key"] == key


def _end(catalog: Catalog, key: str, status: str = "done", error: str | None = None) -> None:
    _claim(catalog, key)
    assert catalog.end_job(key, "w1", status, error,
                           cost={"wall_s": 42.0, "cpu_s": 40.0, "peak_rss_mb": 512.0})


def _outputs(home: Home, key: str, rng, labels: np.ndarray, skill: float) -> np.ndarray:
    """Fake cached logits: right on about `skill` of the samples; returns the rights."""
    logits = rng.normal(size=(N, 10))
    boost = rng.random(N) < skill
    logits[np.arange(N)[boost], labels[boost]] += 6.0
    folder = home.outputs / key
    save_array(logits.astype(np.float16), folder / "logits.npy")
    save_array(labels.astype(np.int64), folder / "labels.npy")
    save_array(np.array([f"img{i:03d}" for i in range(N)]), folder / "ids.npy")
    return logits.astype(np.float16).argmax(1) == labels


def _team(consensus: str, accuracy: float, disagreement: float) -> dict:
    return {"team": ("A", "B"), "size": 2, "consensus": consensus, "accuracy": accuracy,
            "nll": 0.7, "average_accuracy": 0.7, "vs_mean": accuracy - 0.7, "vs_best": 0.01,
            "eir": 0.1, "nll_gain": 0.05, "label_disagreement": disagreement}


def _sweep_row(team: str, lam: float | None, set_name: str, accuracy: float) -> dict:
    return {**_team("average", accuracy, 0.3), "team": team, "group": "j", "lam": lam,
            "loss": "balanced" if lam is not None else "separate", "set": set_name,
            "members": ["a", "b"], "drop": None if set_name == "clean" else 0.2,
            "gncl_diversity": 0.125}


FIGURE_B = {("label_disagreement", "clean"): 0.5, ("label_disagreement", "noise"): 0.75,
            ("q_diversity", "clean"): -0.25, ("q_diversity", "noise"): None}


def _correlation(metric: str, set_name: str) -> dict:
    stats = dict.fromkeys(("pearson_p", "spearman_r", "spearman_p", "pearson_ci_low",
                           "pearson_ci_high", "spearman_ci_low", "spearman_ci_high", "partial_r",
                           "partial_p"))
    return {"set": set_name, "consensus": "average", "metric": metric, "size": "all",
            "improvement": "vs_mean", "n": 4, "pearson_r": FIGURE_B[(metric, set_name)], **stats}


def build_home(root: Path) -> tuple[Home, dict]:
    """Members A and B trained and evaluated, C failed, D training (2 of 4 epochs), E
    queued; a study of A and B; a second experiment sharing A's training."""
    home, rng = Home(root), np.random.default_rng(0)
    catalog = Catalog(home.catalog)
    jobs = [j for m in MODELS for j in (_train(m), *(_eval(m, s) for s in SETS))]
    catalog.record_experiment(EXP, "fixture", "spec.yaml", "name: fixture",
                              [(j.key, j.member) for j in jobs])
    catalog.enqueue(EXP, jobs)
    catalog.register_worker("w1", os.getpid(), "host", "cpu", str(root / "w1.log"), EXP)
    rights = {}
    for m in ("A", "B"):
        for epoch in range(1, EPOCHS + 1):
            catalog.record_epoch(f"train-{m}", epoch, loss=2.0 / epoch, train_acc=0.2 * epoch,
                                 val_acc=0.15 * epoch, lr=0.1, seconds=1.0)
        _end(catalog, f"train-{m}")
    for m, s in [(m, s) for m in ("A", "B") for s in SETS]:
        labels = rng.integers(0, 10, N) if m == "A" else np.load(
            home.outputs / f"eval-A-{s}" / "labels.npy")
        right = rights[(m, s)] = _outputs(home, f"eval-{m}-{s}", rng, labels, 0.6)
        catalog.record_result(f"eval-{m}-{s}", f"train-{m}", MODELS[m], s, float(right.mean()),
                              1.0, N)
        _end(catalog, f"eval-{m}-{s}")
    _end(catalog, "train-C", "failed", "CUDA out of memory")
    _claim(catalog, "train-D")
    for epoch in (1, 2):
        catalog.record_epoch("train-D", epoch, loss=1.0 / epoch, train_acc=0.3,
                             val_acc=0.25 * epoch, lr=0.1, seconds=1.0)
    log = root / "train-D.log"
    log.write_text("".join(f"log line {i:02d}\n" for i in range(30)))
    catalog.set_job_log("train-D", str(log))
    catalog.beat("w1", "train-D")
    disagreement = {s: float((rights[("A", s)] != rights[("B", s)]).mean()) for s in SETS}
    catalog.record_study(
        EXP, {"clean": [_team("average", 0.80, disagreement["clean"]),
                        _team("plurality", 0.78, disagreement["clean"])],
              "noise": [_team("average", 0.60, disagreement["noise"]),
                        _team("plurality", 0.62, disagreement["noise"])]},
        [_correlation(m, s) for m in ("label_disagreement", "q_diversity") for s in SETS],
        {s: {"label_disagreement": np.array([[0.0, 0.3], [0.3, 0.0]]),
             "q_diversity": np.array([[1.0, -0.4], [-0.4, 1.0]])} for s in SETS},
        ["A", "B"], [], [], [_sweep_row("j[0.5]", 0.5, s, 0.9 - 0.2 * (s != "clean"))
                             for s in SETS] + [_sweep_row("A + B", None, "clean", 0.8)])
    # a second experiment: A evaluated again on clean by a job of its own
    other = _eval("A", "clean", "-2")
    catalog.record_experiment(EXP2, "second", "spec2.yaml", "name: second",
                              [("train-A", "A"), (other.key, "A")])
    catalog.enqueue(EXP2, [other])
    catalog.record_result(other.key, "train-A", MODELS["A"], "clean", 0.9, 1.0, N)
    _end(catalog, other.key)
    accuracy = {k: 100 * float(v.mean()) for k, v in rights.items()}
    catalog.close()
    return home, accuracy


@pytest.fixture
def fixed(tmp_path):
    return build_home(tmp_path / "home")


# -- driving the app -----------------------------------------------------------------------

def app_on(home: Home, mode: str, experiment: str | None = None, readonly: bool = False):
    """The app, started on `mode` (so these tests do not depend on the catalog screen)."""
    app = type("ScreensApp", (EnsuiApp,), {"DEFAULT_MODE": mode})(home, readonly=readonly)
    app.experiment = experiment
    return app


async def settle(pilot, until=lambda: True, timeout: float = 10.0) -> None:
    """Let thread workers finish and their messages land, until `until()` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerCancelled:
            pass  # an exclusive read replaced by a newer one
        await pilot.pause()
        if until():
            return
        assert loop.time() < deadline, "the screen did not reach the expected state"
        await asyncio.sleep(0.05)


def drive(app, size, script) -> None:
    async def main():
        async with app.run_test(size=size) as pilot:
            await script(pilot)
    asyncio.run(main())


def cells(table, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


def text_of(static) -> str:
    """What a Static shows, as plain text."""
    from rich.console import Console

    console = Console(width=100, record=True, file=io.StringIO())
    console.print(static.content)
    return console.export_text()


def job(home: Home, key: str) -> dict:
    catalog = Catalog(home.catalog)
    try:
        return catalog.job(key)
    finally:
        catalog.close()


def select_row(table, key: str) -> None:
    table.move_cursor(row=table.get_row_index(key))


# -- heatmap widget and team view (plain functions) ----------------------------------------

def test_heatmap_scale_and_window():
    assert scale_colour(0.0, "diverging", -1, 1).hex == "#F7F7F7"
    assert scale_colour(1.0, "diverging", -1, 1).hex == "#B2182B"
    assert scale_colour(-2.0, "diverging", -1, 1).hex == "#2166AC"  # clipped
    assert scale_colour(5.0, "sequential", 0, 10).hex != scale_colour(9.0, "sequential", 0, 10).hex
    assert window(10, 0, 4, 0) == 0 and window(10, 7, 4, 0) == 4 and window(10, 5, 4, 4) == 4
    assert window(10, 2, 4, 4) == 2 and window(3, 2, 10, 0) == 0


class HeatmapApp(App):
    """A 14 × 14 grid with long names, and the cells `enter` was pressed on."""

    def __init__(self):
        super().__init__()
        self.opened: list[tuple[int, int]] = []

    def compose(self):
        yield Heatmap(id="grid")

    def on_mount(self) -> None:
        names = [f"member_{i}_with_a_long_name" for i in range(14)]
        values = [[(r - c) / 13 for c in range(14)] for r in range(14)]
        values[13][9] = None
        self.query_one(Heatmap).set_data(names, names, values, "diverging", "grid")
        self.query_one(Heatmap).focus()

    def on_heatmap_selected(self, event: Heatmap.Selected) -> None:
        self.opened.append((event.row, event.col))


def test_heatmap_cursor_window_and_enter():
    async def script(pilot):
        await pilot.press(*"lllllllll", *"jjjjjjjjjjjjjjjjjjjj", "enter", "h", "enter")
        await pilot.pause()
        text = pilot.app.query_one(Heatmap).render().plain
        assert pilot.app.opened == [(13, 9), (13, 8)]
        assert "[+0.38]" in text and "[—]" not in text  # (13 - 8) / 13, cursor in view
        assert "14 member_13" in text and " 10 " in text  # numbered: names do not fit
        assert "member_13_with_a_long_name × member_8_with_a_long_name = +0.38" in text

    drive(HeatmapApp(), (80, 24), script)


def test_team_view_filters_sorts_and_drops_equal_columns():
    rows = [{"team": "A + B", "set": "clean", "acc": 0.8, "size": 2},
            {"team": "A + C", "set": "noise", "acc": None, "size": 2},
            {"team": "B + C", "set": "noise", "acc": 0.7, "size": 2}]
    columns, out = team_view(rows, "acc", True, "", False)
    assert [r[0] for r in out] == ["A + B", "B + C", "A + C"]  # missing last
    columns, out = team_view(rows, "acc", False, "NOISE", True)
    assert columns == ["team", "acc"] and [r[0] for r in out] == ["B + C", "A + C"]


# -- jobs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_jobs_table_shows_states_progress_workers_and_log(fixed, size):
    home, _ = fixed

    async def script(pilot):
        screen = pilot.app.screen
        queue = screen.query_one("#queue")
        await settle(pilot, lambda: queue.row_count == 16)
        states = {k.value: cells(queue, k.value)[4] for k in queue.rows}
        assert "failed" in states["train-C"] and "running" in states["train-D"]
        assert "queued" in states["train-E"] and "done" in states["eval-A-clean"]
        assert cells(queue, "train-D")[6] == "████░░░░ 2/4"
        assert cells(queue, "train-A")[6] == "████████ 4/4"
        assert cells(queue, "eval-A-clean")[6] == "done"
        assert cells(queue, "train-C")[10] == "CUDA out of memory"
        workers = screen.query_one("#workers")
        assert cells(workers, "w1")[:3] == ["cpu", "running", "train-D"]
        select_row(queue, "train-D")
        log = screen.query_one("#log-text")
        await settle(pilot, lambda: "log line 29" in text_of(log))
        assert "log line 09" not in text_of(log)  # only the last 20 lines
        assert screen.query_one("#curve").plt.build()  # the curve draws
        await pilot.press("f")  # running jobs only
        await settle(pilot, lambda: queue.row_count == 1)
        assert "running" in cells(queue, "train-D")[4]

    drive(app_on(home, "jobs"), size, script)


def test_cancel_asks_first_then_cancels(fixed):
    home, _ = fixed

    async def script(pilot):
        queue = pilot.app.screen.query_one("#queue")
        await settle(pilot, lambda: queue.row_count == 16)
        select_row(queue, "train-E")
        await settle(pilot, lambda: pilot.app.screen.selected == "train-E")
        await pilot.press("c")
        await settle(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen")
        await pilot.press("n")
        await settle(pilot)
        assert job(home, "train-E")["status"] == "queued"
        await pilot.press("c")
        await settle(pilot, lambda: type(pilot.app.screen).__name__ == "ConfirmScreen")
        await pilot.press("y")
        await settle(pilot, lambda: "cancelled" in cells(queue, "train-E")[4])
        assert job(home, "train-E")["status"] == "cancelled"

    drive(app_on(home, "jobs"), (120, 40), script)


def test_retry_requeues_a_failed_job_and_readonly_refuses(fixed):
    home, _ = fixed

    async def retry(pilot):
        queue = pilot.app.screen.query_one("#queue")
        await settle(pilot, lambda: queue.row_count == 16)
        select_row(queue, "train-C")
        await settle(pilot, lambda: pilot.app.screen.selected == "train-C")
        await pilot.press("r")
        await settle(pilot, lambda: "queued" in cells(queue, "train-C")[4])
        assert job(home, "train-C")["status"] == "queued" and job(home, "train-C")["error"] is None
        top = max(job(home, k)["priority"] for k in [k.value for k in queue.rows])
        await pilot.press("n")  # run now: first in the queue
        await settle(pilot, lambda: job(home, "train-C")["priority"] > top)

    async def refused(pilot):
        queue = pilot.app.screen.query_one("#queue")
        await settle(pilot, lambda: queue.row_count == 16)
        select_row(queue, "train-E")
        await pilot.press("c", "r", "n")
        await settle(pilot)
        assert type(pilot.app.screen).__name__ == "JobsScreen"
        assert job(home, "train-E")["priority"] == 0

    drive(app_on(home, "jobs", readonly=True), (80, 24), refused)
    drive(app_on(home, "jobs"), (80, 24), retry)


# -- results ---------------------------------------------------------------------------------

def reported(model_id: str) -> float:
    """Figure A's top-1 of a model, from the seed tables."""
    from ensui import paper

    top1 = {paper.normalize_id(k): v for k, v in paper.figure_a()["models"].items()}
    row = next(r for r in paper.table_i() if r["id"] == model_id)
    return top1[paper.normalize_id(row["figure_a_id"])]


def _results_loaded(pilot) -> bool:
    return pilot.app.screen.query_one("#accuracy").row_count == 5


@pytest.mark.parametrize("size", SIZES)
def test_results_show_accuracy_beside_reported_top1_and_pin_deltas(fixed, size):
    home, accuracy = fixed

    async def script(pilot):
        await settle(pilot, lambda: _results_loaded(pilot))
        table = pilot.app.screen.query_one("#accuracy")
        row = cells(table, "A")
        assert row[1:3] == ["SqueezeNet", f"{reported('SqueezeNet'):.1f}"]
        assert row[3:5] == [f"{accuracy[('A', s)]:.1f}" for s in SETS]
        assert cells(table, "C")[3] == "—" and cells(table, "C")[-1] == "failed"
        select_row(table, "A")
        await pilot.press("p")
        await settle(pilot)
        assert "(baseline)" in cells(table, "A")[0]
        for i, s in enumerate(SETS):
            delta = accuracy[("B", s)] - accuracy[("A", s)]
            colour = "green" if delta > 0 else "red" if delta < 0 else "default"
            assert cells(table, "B")[3 + i] == f"{accuracy[('B', s)]:.1f} [{colour}]{delta:+.1f}[/]"

    drive(app_on(home, "results", EXP), size, script)


def test_teams_sort_filter_and_differing_columns(fixed):
    home, _ = fixed

    async def script(pilot):
        await settle(pilot, lambda: _results_loaded(pilot))
        screen = pilot.app.screen
        await pilot.press("right_square_bracket")
        teams = screen.query_one("#teams")
        await settle(pilot, lambda: teams.row_count == 4)
        while screen.sort != "accuracy":
            await pilot.press("s")
        column = [str(k.value) for k in teams.columns].index("accuracy")
        values = [float(teams.get_row_at(i)[column]) for i in range(4)]
        assert values == sorted(values, reverse=True) == [0.8, 0.78, 0.62, 0.6]
        await pilot.click("#teams", offset=(2 + sum(c.get_render_width(teams) for c in
                                                    list(teams.columns.values())[:column]), 0))
        await settle(pilot)
        assert not screen.descending  # header click on the sort column reverses it
        await pilot.press("left_square_bracket", "slash", *"noise", "enter")  # from another tab
        await settle(pilot, lambda: teams.row_count == 2)
        assert {teams.get_row_at(i)[0] for i in range(2)} == {"noise"}
        before = [str(k.value) for k in teams.columns]
        await pilot.press("v")
        await settle(pilot)
        after = [str(k.value) for k in teams.columns]
        assert "size" in before and "size" not in after and "consensus" in after

    drive(app_on(home, "results", EXP), (120, 40), script)


@pytest.mark.parametrize("size", SIZES)
def test_figure_b_heatmap_renders_values(fixed, size):
    home, _ = fixed

    async def script(pilot):
        await settle(pilot, lambda: _results_loaded(pilot))
        await pilot.press("right_square_bracket", "right_square_bracket")
        heatmap = pilot.app.screen.query_one("#figure-b", Heatmap)
        await settle(pilot, lambda: heatmap.rows == ["label_disagreement", "q_diversity"])
        text = heatmap.render().plain
        for value in ("+0.50", "+0.75", "-0.25", "—", "scale"):
            assert value in text
        await pilot.press("j", "l")
        assert heatmap.cursor == (1, 1) and "[—]" in heatmap.render().plain

    drive(app_on(home, "results", EXP), size, script)


def test_no_screen_is_prepared_once_the_app_shuts_down(fixed):
    """Building a screen stack while Textual closes them all fails its shutdown."""
    home, _ = fixed

    async def script(pilot):
        app = pilot.app
        app._unbuilt = ["history"]
        app._running = False  # what App._shutdown sets before closing every stack
        try:
            app._prepare_next_mode()
        finally:
            app._running = True
        assert app._unbuilt == ["history"]  # left alone: nothing built

    drive(app_on(home, "jobs"), (120, 40), script)


def test_sweep_tab_lists_joint_ensembles_beside_separate_teams(fixed):
    home, _ = fixed

    async def script(pilot):
        await settle(pilot, lambda: _results_loaded(pilot))
        await pilot.press("left_square_bracket", "left_square_bracket")  # round, backwards
        table = pilot.app.screen.query_one("#sweep", DataTable)
        await settle(pilot, lambda: table.row_count == 3)
        assert pilot.app.screen.focused is table
        assert cells(table, "j|j[0.5]|noise|average") == [
            "j[0.5]", "balanced", "noise", "average", "70.0", "+0.0", "20.0", "0.3000", "—",
            "—", "0.1250"]
        assert cells(table, "j|A + B|clean|average")[:3] == ["A + B", "separate", "clean"]

    drive(app_on(home, "results", EXP), (120, 40), script)


def _home_with_a_front(root: Path) -> Home:
    home = Home(root)
    catalog = Catalog(home.catalog)
    catalog.record_experiment("nasexp", "nas", "spec.yaml", "name: nas", [("s1", "supernet")])
    table_ii = {"depth": [0, 0, 0, 0, 1], "width": [0, 0, 0, 2, 2, 2], "expansion": [0.2] * 12}
    catalog.record_front("s1", [
        {"config_key": "a", "accuracy": 0.5, "macs": 2_000_000, "params": 500_000,
         "table_ii": None, "subnet": {"depths": [1, 1, 2, 1], "widths": [2, 2, 2, 2]}},
        {"config_key": "b", "accuracy": 0.75, "macs": 9_000_000, "params": 1_500_000,
         "table_ii": table_ii, "subnet": {}}])
    catalog.close()
    return home


@pytest.mark.parametrize("readonly", [False, True])
def test_front_tab_shows_the_search_and_saves_a_point(tmp_path, readonly):
    home = _home_with_a_front(tmp_path / "home")

    async def script(pilot):
        table = pilot.app.screen.query_one("#front", DataTable)
        await settle(pilot, lambda: table.row_count == 2)
        await pilot.press("left_square_bracket")  # round to the last tab
        await settle(pilot, lambda: pilot.app.screen.focused is table)
        assert cells(table, "1") == ["1", "75.0", "9.0", "1.50",
                                     "[0, 0, 0, 0, 1] / [0, 0, 0, 2, 2, 2] / " + str([0.2] * 12)]
        assert cells(table, "0")[4] == "— (not Table ii)"
        await pilot.press("j", "a")
        await settle(pilot)
        catalog = Catalog(home.catalog)
        saved = [r["id"] for r in catalog.subnets() if r["source"].startswith("experiment nas")]
        catalog.close()
        assert saved == ([] if readonly else ["nas-nase-1"])

    drive(app_on(home, "results", "nasexp", readonly=readonly), (120, 40), script)


def test_pairwise_cell_opens_the_pairs_two_by_two(fixed):
    home, _ = fixed

    async def script(pilot):
        await settle(pilot, lambda: _results_loaded(pilot))
        await pilot.press(*["right_square_bracket"] * 3)
        heatmap = pilot.app.screen.query_one("#pairwise", Heatmap)
        await settle(pilot, lambda: heatmap.rows == ["A", "B"])
        assert "label_disagreement on clean" in heatmap.title and "0.30" in heatmap.render().plain
        await pilot.press("l", "enter")
        await settle(pilot, lambda: type(pilot.app.screen).__name__ == "PairScreen")
        body = pilot.app.screen.query_one("#pair")
        await settle(pilot, lambda: "samples" in text_of(body))
        shown = text_of(body)
        right = {}
        for m in ("A", "B"):
            folder = home.outputs / f"eval-{m}-clean"
            right[m] = np.load(folder / "logits.npy").argmax(1) == np.load(folder / "labels.npy")
        a, b = right["A"], right["B"]
        counts = pilot.app.screen.counts
        assert counts == {"both": int((a & b).sum()), "a_only": int((a & ~b).sum()),
                          "b_only": int((~a & b).sum()), "neither": int((~a & ~b).sum())}
        assert f"img{np.flatnonzero(a != b)[0]:03d}" in shown
        await pilot.press("escape")
        await pilot.press("m")
        assert "q_diversity" in heatmap.title

    drive(app_on(home, "results", EXP), (120, 40), script)


def test_correlation_points_pick_the_cells_teams():
    teams = [{"team": "A + B", "val_set": "clean", "consensus": "average", "q": 0.1, "vs_mean": 2.0},
             {"team": "A + C", "val_set": "clean", "consensus": "average", "q": None,
              "vs_mean": 1.0},
             {"team": "A + B", "val_set": "noise", "consensus": "average", "q": 0.3, "vs_mean": 3.0},
             {"team": "A + B", "val_set": "clean", "consensus": "plurality", "q": 0.4,
              "vs_mean": 4.0},
             {"team": "B + C", "val_set": "clean", "consensus": "average", "q": 0.5, "vs_mean": -1.0}]
    assert correlation_points(teams, "q", "clean", "average", "vs_mean") == [
        (0.1, 2.0, "A + B"), (0.5, -1.0, "B + C")]
    text = correlation_text({"pearson_r": 0.5, "pearson_ci_low": -0.25, "pearson_ci_high": 0.9,
                             "pearson_p": 0.0123, "spearman_r": None, "spearman_p": None, "n": 7})
    assert "Pearson r +0.500 (95% CI -0.250 … +0.900, p 0.0123)" in text
    assert "Spearman ρ —" in text and "n 7 teams" in text


def test_figure_b_cell_opens_the_teams_behind_it(fixed):
    home, _ = fixed
    teams = {s: float(v) for s, v in zip(SETS, (0.80 - 0.7, 0.60 - 0.7), strict=True)}

    async def script(pilot):
        await settle(pilot, lambda: _results_loaded(pilot))
        await pilot.press("right_square_bracket", "right_square_bracket")
        heatmap = pilot.app.screen.query_one("#figure-b", Heatmap)
        await settle(pilot, lambda: heatmap.rows == ["label_disagreement", "q_diversity"])
        await pilot.press("l", "enter")  # label_disagreement on noise
        await settle(pilot, lambda: type(pilot.app.screen).__name__ == "CorrelationScreen")
        modal = pilot.app.screen
        assert (modal.metric, modal.set_name, modal.improvement) == (
            "label_disagreement", "noise", "vs_mean")
        [(x, y, team)] = modal.points  # the fixture's one team under the average consensus
        assert team == "A + B" and y == pytest.approx(teams["noise"])
        assert "Pearson r +0.750" in text_of(modal.query_one("#corr-stats"))
        await pilot.press("escape")
        assert type(pilot.app.screen).__name__ == "ResultsScreen"

    drive(app_on(home, "results", EXP), (120, 40), script)


def test_results_view_persists_between_sessions(fixed):
    home, _ = fixed

    async def change(pilot):
        await settle(pilot, lambda: _results_loaded(pilot))
        screen = pilot.app.screen
        select_row(screen.query_one("#accuracy"), "B")
        await pilot.press("p", "right_square_bracket")
        while screen.sort != "accuracy":
            await pilot.press("s")
        await pilot.press("v", "slash", *"noise", "enter")
        await settle(pilot, lambda: load_view(home, "results").get("filter") == "noise")

    async def reopened(pilot):
        await settle(pilot, lambda: _results_loaded(pilot))
        screen = pilot.app.screen
        assert (screen.pinned, screen.sort, screen.only_differing, screen.needle) == (
            "B", "accuracy", True, "noise")
        assert screen.query_one("#tabs").active == "teams-tab"
        assert "(baseline)" in cells(screen.query_one("#accuracy"), "B")[0]
        teams = screen.query_one("#teams")
        await settle(pilot, lambda: teams.row_count == 2)  # the filter applies again

    drive(app_on(home, "results", EXP), (120, 40), change)
    drive(app_on(home, "results", EXP), (120, 40), reopened)


def test_views_file_damaged_or_read_only_gives_defaults(fixed, tmp_path):
    home, _ = fixed
    views_path(home).write_text("{not json")
    assert load_view(home, "results") == {}
    save_view(home, "jobs", {"state": "failed"})  # replaces the damaged file
    assert load_view(home, "jobs") == {"state": "failed"} and load_view(home, "results") == {}
    views_path(home).write_text('{"results": {"pinned": 3, "sort": "accuracy"}}')

    async def script(pilot):
        await settle(pilot, lambda: _results_loaded(pilot))
        screen = pilot.app.screen
        assert screen.pinned is None and screen.sort == "accuracy"  # a wrong type is ignored
        await pilot.press("right_square_bracket", "v")
        await settle(pilot)

    before = views_path(home).read_text()
    drive(app_on(home, "results", EXP, readonly=True), (120, 40), script)
    assert views_path(home).read_text() == before  # a read-only session writes nothing


def test_export_writes_the_focused_table_as_csv(fixed):
    home, accuracy = fixed

    async def script(pilot):
        await settle(pilot, lambda: _results_loaded(pilot))
        pilot.app.screen.query_one("#accuracy").focus()
        await pilot.press("e")
        await settle(pilot)
        path = Path.cwd() / f"fixture-{EXP[:8]}" / "accuracy.csv"
        rows = list(csv.DictReader(path.open()))
        assert [r["member"] for r in rows] == list(MODELS)
        assert float(rows[0]["clean"]) == pytest.approx(accuracy[("A", "clean")])

    drive(app_on(home, "results", EXP), (80, 24), script)


def test_screens_follow_jobs_that_finish_elsewhere(fixed):
    """Another process ends D's training and evaluates it: both screens catch up by polling."""
    home, _ = fixed

    async def script(pilot):
        queue = pilot.app.screen.query_one("#queue")
        await settle(pilot, lambda: queue.row_count == 16)
        catalog = Catalog(home.catalog)
        for epoch in (3, 4):
            catalog.record_epoch("train-D", epoch, loss=0.2, train_acc=0.5, val_acc=0.5, lr=0.1,
                                 seconds=1.0)
        assert catalog.end_job("train-D", "w1", "done")
        await settle(pilot, lambda: cells(queue, "train-D")[6] == "████████ 4/4")
        pilot.app.experiment = EXP
        pilot.app.switch_mode("results")
        await settle(pilot, lambda: _results_loaded(pilot))
        table = pilot.app.screen.query_one("#accuracy")
        assert cells(table, "D")[3] == "—"
        catalog.record_result("eval-D-clean", "train-D", MODELS["D"], "clean", 0.5, 1.0, N)
        _end(catalog, "eval-D-clean")
        catalog.close()
        await settle(pilot, lambda: cells(table, "D")[3] == "50.0")

    drive(app_on(home, "jobs"), (80, 24), script)


# -- history ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_history_lists_experiments_and_opens_results(fixed, size):
    home, _ = fixed

    async def script(pilot):
        table = pilot.app.screen.query_one("#experiments")
        await settle(pilot, lambda: table.row_count == 2)
        assert cells(table, EXP)[1:3] == ["fixture", EXP[:8]]
        assert cells(table, EXP)[4:] == ["5", "6/15 (1 failed)"]
        assert cells(table, EXP2)[4:] == ["1", "2/2"]
        select_row(table, EXP)
        await pilot.press("enter")
        await settle(pilot, lambda: type(pilot.app.screen).__name__ == "ResultsScreen")
        assert pilot.app.experiment == EXP
        await settle(pilot, lambda: _results_loaded(pilot))

    drive(app_on(home, "history"), size, script)


def test_history_compares_two_marked_experiments(fixed):
    home, accuracy = fixed

    async def script(pilot):
        table = pilot.app.screen.query_one("#experiments")
        await settle(pilot, lambda: table.row_count == 2)
        for exp in (EXP, EXP2):
            select_row(table, exp)
            await pilot.press("x")
        compare = pilot.app.screen.query_one("#compare")
        await settle(pilot, lambda: compare.row_count == 4)
        a = accuracy[("A", "clean")]
        colour = "green" if a < 90 else "red"
        assert cells(compare, "A|clean")[2:] == [f"{a:.1f}", f"90.0 [{colour}]{90 - a:+.1f}[/]"]
        assert cells(compare, "B|noise")[3] == "—"

    drive(app_on(home, "history"), (120, 40), script)
