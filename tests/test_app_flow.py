"""The app end to end: pick three members, build, launch, watch the jobs finish and the
results fill in; reattach to work that runs while the app is closed; and the real `ensui`
command in a real terminal under tmux."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time

import pytest
from textual.widgets import DataTable

from conftest import write
from ensui.catalog import Catalog
from ensui.engine.runtime import pool
from test_app_catalog import launch_on_clean, make_app, settle


async def _wait(pilot, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.2)


def _rows(screen, table_id: str) -> int:
    return screen.query_one(f"#{table_id}", DataTable).row_count


def test_pick_build_launch_watch_and_read_the_results(home):
    catalog_path = home / "catalog.db"
    started: list[int] = []

    async def body():
        app, notes = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            # three of the cheapest members: rows 5, 6 and 3
            await pilot.press(*"jjjjj", "space", "j", "space", *"kkk", "space")
            assert app.picked == ["SqueezeNet_512", "SqueezeNet", "MNASNET_1"]
            started.extend(await launch_on_clean(pilot, name="flow", epochs="1", team_sizes="2"))
            assert app.current_mode == "jobs"
            jobs = app.screen
            await _wait(pilot, lambda: _rows(jobs, "queue") >= 3 * 4, 60)  # the queue shows
            exp = Catalog(catalog_path).find_experiment("flow")["id"]

            def finished() -> bool:
                progress = Catalog(catalog_path).experiment_progress(exp)
                return not progress.get("queued") and not progress.get("running")

            await _wait(pilot, finished, 400)
            await pilot.press("4")
            results = app.screen
            await _wait(pilot, lambda: _rows(results, "accuracy") == 3, 30)
            await _wait(pilot, lambda: "flow" in str(results.query_one("#title").content), 30)
            figure = results.query_one("#figure-b")
            await _wait(pilot, lambda: bool(getattr(figure, "rows", None)), 30)
            assert "label_disagreement" in figure.rows

    try:
        asyncio.run(body())
    finally:
        pool.stop(started, grace_s=10)
    catalog = Catalog(catalog_path)
    states = {j["status"] for j in catalog.experiment_jobs(catalog.find_experiment("flow")["id"])}
    assert states == {"done"}


def test_reattach_after_the_app_is_closed_and_reopened_while_a_job_runs(tmp_path, home):
    spec = write(tmp_path, "name: long\ntraining: {epochs: 30, batch_size: 64}\n"
                           "validation: {sets: [clean], limit: 40}\nanalysis: {enabled: false}\n"
                           "members: [SqueezeNet]\n")
    subprocess.run([sys.executable, "-m", "ensui", "--home", str(home), "headless", "--spec",
                    str(spec), "--detach"], check=True, capture_output=True, timeout=120)
    catalog = Catalog(home / "catalog.db")

    async def look() -> tuple[str, str]:
        app, _ = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("3")
            jobs = app.screen
            await _wait(pilot, lambda: _rows(jobs, "queue") >= 2, 60)
            table = jobs.query_one("#queue", DataTable)
            cells = [" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]
        return next(c for c in cells if "train" in c), app.return_code

    try:
        deadline = time.time() + 120
        while not catalog.jobs_page(states=("running",)) and time.time() < deadline:
            time.sleep(0.2)
        first, _ = asyncio.run(look())
        assert "running" in first
        epoch = catalog.jobs_page(states=("running",))[0]["epoch"] or 0
        while (catalog.jobs_page(states=("running",))[0]["epoch"] or 0) <= epoch:
            assert time.time() < deadline + 120
            time.sleep(0.2)  # the job went on while the app was closed
        again, _ = asyncio.run(look())
        assert "running" in again and again != first  # reattached: progress moved
    finally:
        pool.stop([w["pid"] for w in catalog.workers(alive_only=True)], grace_s=10)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_the_real_command_in_tmux(home):
    """What a person sees: the catalog, a filter, the jobs screen, then quitting."""
    session = f"ensui-test-{time.time_ns()}"
    command = f"{sys.executable} -m ensui --home {home}"

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                              capture_output=True, text=True).stdout

    def wait_until(seen, what: str, timeout: float = 60) -> str:
        deadline = time.time() + timeout
        while not seen(shown := screen()):
            assert time.time() < deadline, f"{what}:\n{shown}"
            time.sleep(0.2)
        return shown

    def wait_for(text: str) -> str:
        return wait_until(lambda shown: text in shown, f"'{text}' never shown")

    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                    command], check=True)
    try:
        shown = wait_for("ResNext50_32.2")
        assert "Table i" in shown and "Table ii" in shown
        subprocess.run(["tmux", "send-keys", "-t", session, "/"], check=True)
        wait_for("filter by id")  # the filter field has opened and has the focus
        subprocess.run(["tmux", "send-keys", "-t", session, "d", "i", "n", "o"], check=True)
        # each key refilters, and 'd' alone still matches 'supervised': wait for all four
        wait_until(lambda shown: "dino_resnet1" in shown and "ResNext50_32.2" not in shown,
                   "'dino' never filtered ResNext50_32.2 out")
        subprocess.run(["tmux", "send-keys", "-t", session, "Escape"], check=True)
        wait_for("ResNext50_32.2")  # esc cleared the filter (a key right after esc would
        subprocess.run(["tmux", "send-keys", "-t", session, "3"], check=True)  # read as alt)
        wait_for("Cancel job")  # the jobs screen's keys
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.time() + 20
        while subprocess.run(["tmux", "has-session", "-t", session],
                             capture_output=True).returncode == 0:
            assert time.time() < deadline, "q did not quit"
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
