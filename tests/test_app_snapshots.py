"""Snapshots of every screen at 80×24 and 120×40: builder (three members picked), jobs,
results (the accuracy tab and the Figure B tab), history, and the help modal over the
catalog.

They run on the fixed catalog of test_app_screens (no training), with every time in it
pinned afterwards and the jobs screen's clock fixed, so the pictures are the same on any
run and any machine. Each app starts on the catalog screen and is switched with its mode
key, as a person would; the picture is taken once the screen's workers are done.

Update after an intended change with `pytest tests/test_app_snapshots.py --snapshot-update`
and look at the report before committing the new files."""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace

import pytest
from textual.worker import WorkerCancelled

from ensui.app import EnsuiApp
from ensui.catalog import Catalog
from ensui.screens import jobs as jobs_screen
from ensui.screens.views import views_path
from test_app_screens import EXP, EXP2, build_home

SIZES = [(80, 24), (120, 40)]
IDS = ["80x24", "120x40"]
PICKED = ["ResNext50_32.2", "MNASNET_1", "SqueezeNet"]
# 2024-05-01 12:00:00 UTC: the experiment was recorded then, its jobs ran over the next
# hour, and "now" (the jobs screen's clock) is an hour and a half later.
T0 = 1_714_564_800.0
NOW = T0 + 5400.0


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds")


def pin_times(home) -> None:
    """Every time the fixture recorded, replaced by a fixed one: a job's run starts a
    minute after the one before it (rowid order) and takes 42 s; the running job and its
    worker last beat 5 s before NOW."""
    catalog = Catalog(home.catalog)
    try:
        conn = catalog.db.conn
        conn.execute("UPDATE experiments SET created = ? WHERE id = ?", [_iso(T0), EXP])
        conn.execute("UPDATE experiments SET created = ? WHERE id = ?", [_iso(T0 + 3000), EXP2])
        conn.execute("UPDATE jobs SET created = ?", [_iso(T0)])
        conn.execute("UPDATE jobs SET began = ? + 60 * rowid WHERE began IS NOT NULL", [T0])
        conn.execute("UPDATE jobs SET started = strftime('%Y-%m-%dT%H:%M:%S+00:00', began, "
                     "'unixepoch') WHERE began IS NOT NULL")
        conn.execute("UPDATE jobs SET ended = began + 42, finished = strftime("
                     "'%Y-%m-%dT%H:%M:%S+00:00', began + 42, 'unixepoch') WHERE ended IS NOT NULL")
        conn.execute("UPDATE jobs SET heartbeat = CASE WHEN status = 'running' THEN ? "
                     "ELSE ended END WHERE heartbeat IS NOT NULL", [NOW - 5])
        conn.execute("UPDATE workers SET started = ?, heartbeat = ?", [T0, NOW - 5])
        conn.execute("UPDATE results SET recorded = ?", [_iso(T0 + 3600)])
    finally:
        catalog.close()


@pytest.fixture(scope="module")
def fixed_home(tmp_path_factory):
    home, _ = build_home(tmp_path_factory.mktemp("snapshots") / "home")
    pin_times(home)
    return home


@pytest.fixture
def app(fixed_home, monkeypatch):
    """The app on the fixed home, with the jobs screen's clock at NOW."""
    monkeypatch.setattr(jobs_screen, "time", SimpleNamespace(time=lambda: NOW))
    views_path(fixed_home).unlink(missing_ok=True)  # each snapshot starts from no saved view
    return EnsuiApp(fixed_home)


async def settle(pilot, until=lambda: True, timeout: float = 20.0) -> None:
    """Wait until no worker is left and `until()` holds (a handled message may start
    another worker, and polls start new ones, hence the loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerCancelled:
            pass  # an exclusive read replaced by a newer one
        await pilot.pause()
        if until() and not any(w.is_running for w in pilot.app.workers):
            await pilot.pause()
            return
        assert loop.time() < deadline, "the screen did not reach the expected state"
        await asyncio.sleep(0.05)


def _screen(pilot, name: str) -> bool:
    return type(pilot.app.screen).__name__ == name


async def switch(pilot, key: str, name: str, until=lambda: True) -> None:
    """Settle the catalog screen, press a mode key, settle the screen it shows."""
    await settle(pilot, lambda: _screen(pilot, "CatalogScreen"))
    await pilot.press(key)
    await settle(pilot, lambda: _screen(pilot, name) and until())


def _rows(pilot, table: str, count: int) -> bool:
    return pilot.app.screen.query_one(f"#{table}").row_count == count


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_builder_snapshot(snap_compare, app, size):
    app.picked.extend(PICKED)

    async def before(pilot):
        await switch(pilot, "2", "BuilderScreen",
                     lambda: "3: " in str(pilot.app.screen.query_one("#members").content))

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_jobs_snapshot(snap_compare, app, size):
    async def before(pilot):
        await switch(pilot, "3", "JobsScreen", lambda: _rows(pilot, "queue", 16))
        screen = pilot.app.screen
        queue = screen.query_one("#queue")
        queue.move_cursor(row=queue.get_row_index("train-D"))  # its curve and log below
        await settle(pilot, lambda: screen.selected == "train-D"
                     and "log line 29" in str(screen.query_one("#log-text").content))

    assert snap_compare(app, terminal_size=size, run_before=before)


def _results_loaded(pilot) -> bool:
    return _screen(pilot, "ResultsScreen") and _rows(pilot, "accuracy", 5)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_results_snapshot(snap_compare, app, size):
    app.experiment = EXP

    async def before(pilot):
        await switch(pilot, "4", "ResultsScreen", lambda: _results_loaded(pilot))

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_results_figure_b_snapshot(snap_compare, app, size):
    app.experiment = EXP

    async def before(pilot):
        await switch(pilot, "4", "ResultsScreen", lambda: _results_loaded(pilot))
        await pilot.press("right_square_bracket", "right_square_bracket")
        heatmap = pilot.app.screen.query_one("#figure-b")
        await settle(pilot, lambda: heatmap.rows == ["label_disagreement", "q_diversity"]
                     and pilot.app.focused is heatmap)

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_history_snapshot(snap_compare, app, size):
    async def before(pilot):
        await switch(pilot, "5", "HistoryScreen", lambda: _rows(pilot, "experiments", 2))

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_help_over_catalog_snapshot(snap_compare, app, size):
    async def before(pilot):
        await settle(pilot, lambda: _screen(pilot, "CatalogScreen")
                     and _rows(pilot, "models", 14) and pilot.app.screen.counts)
        await pilot.press("question_mark")
        await settle(pilot, lambda: _screen(pilot, "HelpScreen"))

    assert snap_compare(app, terminal_size=size, run_before=before)
