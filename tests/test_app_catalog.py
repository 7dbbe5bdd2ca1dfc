"""App tests of the catalog, builder and help screens (Pilot), the `ensui` / `ensui serve`
entry points, and snapshots of the catalog screen at 80×24 and 120×40.

Each test runs on the temp home of conftest's autouse fixture, seeded with the paper's
tables. Waiting is on the screen's own workers, never on sleeps."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Checkbox, DataTable, Input, RadioButton, Static
from textual.worker import WorkerCancelled

from ensui.app import EnsuiApp
from ensui.catalog import Catalog
from ensui.home import resolve_home
from ensui.screens.builder import (
    CONSENSUS_CHOICES,
    SET_CHOICES,
    BuilderScreen,
    Form,
    spec_data,
)
from ensui.screens.catalog import CatalogScreen, VariantForm, variant_request
from ensui.screens.help import HelpScreen

SUPERVISED = ["ResNext50_32.2", "ResNext50_32.4l", "ResNext50_16.4"]  # Table i's first rows


def run(test):
    """Run an async test body to its end (no asyncio plugin needed)."""
    return asyncio.run(test())


def make_app(readonly: bool = False, picked=()) -> tuple[EnsuiApp, list]:
    """An app on the test's home whose notifications are collected as (text, severity)."""
    app = EnsuiApp(resolve_home(), readonly=readonly)
    app.picked.extend(picked)
    notes: list[tuple[str, str]] = []
    app.notify = lambda message, severity="information", **_: notes.append((message, severity))
    return app, notes


async def settle(pilot, node=None, rounds: int = 4) -> None:
    """Wait until the workers of `node` (default: the current screen) are done and their
    messages handled; a handled message may start another worker, hence the rounds."""
    node = node or pilot.app.screen
    for _ in range(rounds):
        mine = [w for w in pilot.app.workers if w.node is node]
        try:
            await pilot.app.workers.wait_for_complete(mine)
        except WorkerCancelled:
            pass  # an exclusive read replaced by a newer one
        await pilot.pause()


def detail(screen) -> str:
    return str(screen.query_one("#detail", Static).content)


def table(screen, name: str) -> DataTable:
    return screen.query_one(f"#{name}", DataTable)


# -- catalog screen --------------------------------------------------------------------


def test_catalog_shows_table_i_and_table_ii_with_counted_parameters():
    from ensui.engine.models.factory import build_model, count_parameters

    async def body():
        app, _ = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, CatalogScreen)
            assert table(screen, "models").row_count == 14
            assert table(screen, "subnets").row_count == 11
            arch = screen.models[0]["arch"]
            tiny = count_parameters(build_model(arch, "tiny", 10, 32))
            assert f"{tiny:,}" in detail(screen) and "75.198" in detail(screen)
            await pilot.press("s")
            await settle(pilot)
            paper = count_parameters(build_model(arch, "paper", 1000, 224))
            assert f"{paper:,}" in detail(screen) and "paper scale" in detail(screen)
            assert screen.counts[("model", "ResNext50_32.2", "tiny")] == tiny  # cached

    run(body)


def test_hjkl_move_and_the_pane_follows_the_focused_table():
    async def body():
        app, _ = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            screen = app.screen
            await pilot.press("j", "j", "k")
            await settle(pilot)
            assert table(screen, "models").cursor_row == 1
            assert detail(screen).startswith("ResNext50_32.4l")
            await pilot.press("tab")
            await settle(pilot)
            assert detail(screen).startswith("B_0")
            assert "Table ii" in detail(screen)
            from ensui.engine.models.factory import build_model, count_parameters
            from ensui.screens.widgets import count_text

            own = count_parameters(build_model({"family": "resnet50_subnet", "subnet": "B_0"},
                                               "tiny", 10, 32))
            for _ in range(100):  # the count starts once the cursor rests, in a worker
                if count_text(own) in detail(screen):
                    break
                await settle(pilot)
                await pilot.pause(0.1)
            assert count_text(own) in detail(screen), detail(screen)

    run(body)


def test_filter_narrows_rows_and_escape_clears_it():
    async def body():
        app, _ = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = app.screen
            await pilot.press("slash", *"dino")
            await settle(pilot)
            assert table(screen, "models").row_count == 4
            assert table(screen, "subnets").row_count == 0
            await pilot.press("enter")  # keeps the filter, back to the table
            assert app.focused is table(screen, "models")
            assert table(screen, "models").row_count == 4
            await pilot.press("slash", "escape")
            await settle(pilot)
            assert table(screen, "models").row_count == 14
            assert not screen.query_one("#filter", Input).display

    run(body)


def test_filter_and_scale_persist_between_sessions():
    from ensui.screens.views import load_view

    async def leave():
        app, _ = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("slash", *"dino", "enter", "s")
            await settle(pilot)
        assert load_view(resolve_home(), "catalog") == {"filter": "dino", "scale": "paper"}

    async def reopen():
        app, _ = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = app.screen
            assert (screen.scale, screen.text_filter) == ("paper", "dino")
            assert screen.query_one("#filter", Input).display
            assert table(screen, "models").row_count == 4

    run(leave)
    run(reopen)


def test_space_picks_members_with_a_visible_mark_and_the_builder_lists_them():
    async def body():
        app, notes = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = app.screen
            await pilot.press("space", "j", "space", "j", "space")
            assert app.picked == SUPERVISED
            models = table(screen, "models")
            assert [models.get_cell(i, "pick") for i in SUPERVISED] == ["✓"] * 3
            assert models.get_cell("MNASNET_1", "pick") == ""
            await pilot.press("tab", "space")  # a sub-network is a member too
            assert app.picked == [*SUPERVISED, "B_0"]
            assert table(screen, "subnets").get_cell("B_0", "pick") == "✓"
            await pilot.press("2")
            await settle(pilot)
            assert isinstance(app.screen, BuilderScreen)
            members = str(app.screen.query_one("#members", Static).content)
            assert all(model in members for model in [*SUPERVISED, "B_0"])

    run(body)


def test_duplicate_form_names_the_bad_field_and_saves_a_variant(home):
    async def body():
        app, notes = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            catalog_screen = app.screen
            await pilot.press("d")
            form = app.screen
            assert isinstance(form, VariantForm)
            await pilot.press(*"rx-short", "tab", "0", "enter")
            assert str(form.query_one("#v-error", Static).content).startswith("epochs:")
            assert app.screen is form
            form.query_one("#v-epochs", Input).value = "5"
            form.query_one("#v-lr", Input).value = "0.05"
            await pilot.click("#v-save")
            await settle(pilot, catalog_screen)
            assert app.screen is catalog_screen and "saved rx-short" in notes[-1][0]
            assert table(catalog_screen, "models").row_count == 15
            assert table(catalog_screen, "models").get_cell("rx-short", "epochs") == "5"
            assert detail(catalog_screen).startswith("rx-short")  # the cursor is on it
            assert "variant of ResNext50_32.2" in detail(catalog_screen)

    run(body)
    variant = Catalog(home / "catalog.db").model("rx-short")
    assert variant["epochs"] == 5 and variant["optimizer"]["lr"] == 0.05
    assert variant["optimizer"]["momentum"] == 0.9  # the rest is the base model's


@pytest.mark.parametrize("values, field", [
    ({"name": "has space"}, "name"),
    ({"name": "resnext50_32_2"}, "name"),  # another spelling of a catalog id
    ({"name": "ok", "batch_size": "many"}, "batch size"),
    ({"name": "ok", "lr": "-0.1"}, "lr"),
    ({"name": "ok", "momentum": "-0.5"}, "momentum"),
    ({"name": "ok", "weight_decay": "0"}, "weight decay"),
])
def test_variant_validation_names_the_field(values, field):
    base = Catalog.memory().model("ResNext50_32.2")
    with pytest.raises(ValueError, match=rf"^{field}:"):
        variant_request(base, values, {"ResNext50_32.2"})


def test_variant_refuses_what_the_base_recipe_does_not_have():
    catalog = Catalog.memory()
    with pytest.raises(ValueError, match="^epochs:"):  # backbone + classifier epochs
        variant_request(catalog.model("dino_resnet1"), {"name": "d2", "epochs": "3"}, set())
    with pytest.raises(ValueError, match="^momentum:"):  # adamw
        variant_request(catalog.model("deit_tiny_p16_224"), {"name": "d2", "momentum": "0"},
                        set())
    request = variant_request(catalog.model("dino_resnet1"), {"name": "d2", "lr": "1e-3"}, set())
    assert request == {"base_id": "dino_resnet1", "new_id": "d2", "overrides": {"lr": 0.001}}


# -- builder screen -------------------------------------------------------------------


def test_builder_choices_match_the_engine():
    from ensui.engine.ensembles import CONSENSUS
    from ensui.engine.spec import DEFAULT_SETS

    assert SET_CHOICES == tuple(DEFAULT_SETS) and CONSENSUS_CHOICES == tuple(CONSENSUS)


@pytest.mark.parametrize("form, members, field", [
    (Form(), [], "members"),
    (Form(sets=()), SUPERVISED, "validation sets"),
    (Form(severities="1,6"), SUPERVISED, "severities"),
    (Form(team_sizes="1"), SUPERVISED, "team sizes"),
    (Form(epochs="0"), SUPERVISED, "epochs"),
    (Form(dataset="no/such/folder"), SUPERVISED, "dataset"),
    (Form(crop_scale="0.5"), SUPERVISED, "crop scale"),
    (Form(crop_scale="0.9,0.2"), SUPERVISED, "crop scale"),
    (Form(crop_scale="0.2,x"), SUPERVISED, "crop scale"),
    (Form(hflip="1.5"), SUPERVISED, "flip"),
    (Form(hflip="-1"), SUPERVISED, "flip"),
])
def test_builder_form_errors_name_the_field(form, members, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        spec_data(form, members)


def fill(screen, **fields) -> None:
    for name, value in fields.items():
        screen.query_one(f"#{name}", Input).value = value


async def launch_on_clean(pilot, **fields) -> list[int]:
    """Open the builder, fill `fields`, keep only the clean set, launch; the pids of the
    workers it started."""
    await pilot.press("2")
    builder = pilot.app.screen
    fill(builder, **fields)
    for name in SET_CHOICES[1:]:
        builder.query_one(f"#set-{name}", Checkbox).value = False
    await pilot.press("ctrl+l")
    await settle(pilot, builder)
    return list(builder.started)


def test_save_spec_writes_yaml_that_loads_back_equal_and_headless_accepts(cli, tmp_path):
    from ensui.engine.spec import Spec, load_spec

    async def body():
        app, notes = make_app(picked=SUPERVISED)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("2")
            screen = app.screen
            fill(screen, name="trial run", severities="1, 3", team_sizes="2", epochs="2",
                 crop_scale="0.25, 1", hflip="0")
            screen.query_one("#set-weather", Checkbox).value = False
            screen.query_one("#consensus-vote", Checkbox).value = True
            screen.query_one("#scale-paper", RadioButton).value = True
            await pilot.press("ctrl+s")
            await settle(pilot)
            path = tmp_path / "trial-run.yaml"
            expected = Spec.model_validate({
                "name": "trial run", "scale": "paper", "members": SUPERVISED,
                "validation": {"sets": ["clean", "noise", "blur", "digital"], "severities": [1, 3]},
                "analysis": {"consensus": ["average", "vote"], "team_sizes": [2]},
                "training": {"epochs": 2, "crop_scale": [0.25, 1.0], "hflip": 0.0}})
            assert load_spec(path) == expected == screen.spec
            fill(screen, epochs="3")  # the file now holds another spec: ask first
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert notes[-1][1] == "warning" and load_spec(path).training.epochs == 2
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert load_spec(path).training.epochs == 3
            copied = []
            app.copy_to_clipboard = copied.append
            await pilot.press("y")
            assert copied == ["ensui headless --spec trial-run.yaml"]
        return path

    path = run(body)
    code, _, err = cli("spec", "check", path)
    assert code == 0, err


def test_plan_counts_jobs_to_run_and_errors_show_in_the_status():
    async def body():
        app, _ = make_app(picked=SUPERVISED[:2])
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("2")
            screen = app.screen
            fill(screen, name="plan-me")
            for name in SET_CHOICES[1:]:
                screen.query_one(f"#set-{name}", Checkbox).value = False
            await pilot.press("ctrl+o")
            await settle(pilot)
            status = str(screen.query_one("#status", Static).content)
            # per member: train, evaluate on clean, activations, attribution
            assert status.startswith("9 jobs: 9 to run, 0 cached, 0 already"), status
            fill(screen, severities="9")
            await pilot.press("ctrl+o")
            await settle(pilot)
            assert str(screen.query_one("#status", Static).content).startswith("severities:")

    run(body)


def test_launch_queues_the_jobs_starts_workers_and_opens_the_jobs_mode(home):
    from ensui.engine.runtime import pool

    started: list[int] = []

    async def body():
        app, _ = make_app(picked=["SqueezeNet", "MNASNET_1"])
        async with app.run_test(size=(120, 40)) as pilot:
            started.extend(await launch_on_clean(pilot, name="launch-test", epochs="1"))
            assert app.current_mode == "jobs"

    try:
        run(body)
        catalog = Catalog(home / "catalog.db")
        exp = catalog.find_experiment("launch-test")
        rows = catalog.experiment_jobs(exp["id"])
        assert len(rows) == 8 + 1 and {r["status"] for r in rows} <= {"queued", "running"}
        assert len(started) == 1  # one CPU lane on a machine without a GPU
        assert (home.parent / "launch-test.yaml").is_file()  # replayable by headless
    finally:
        pool.stop(started, grace_s=10)


def test_readonly_blocks_launch_and_duplicate(home):
    async def body():
        app, notes = make_app(readonly=True, picked=["SqueezeNet"])
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("d")
            assert "read-only" in notes[-1][0] and isinstance(app.screen, CatalogScreen)
            await pilot.press("2")
            assert app.screen.query_one("#launch").disabled
            await pilot.press("ctrl+l")
            await settle(pilot)
            assert "read-only" in notes[-1][0] and app.current_mode == "builder"

    run(body)
    assert Catalog(home / "catalog.db").counts()["experiments"] == 0


# -- help, size, entry points -------------------------------------------------------------


def test_help_lists_the_keys_of_the_screen_beneath_and_escape_closes_it():
    async def body():
        app, _ = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            keys = app.screen.query_one("#keys", Static).content
            texts = [str(cell) for column in keys.columns for cell in column.cells]
            assert {"Filter", "Pick", "Duplicate", "Quit", "move in tables"} <= set(texts)
            await pilot.press("escape")
            assert isinstance(app.screen, CatalogScreen)

    run(body)


def test_every_part_fits_in_80x24():
    async def body():
        app, _ = make_app(picked=SUPERVISED)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            for selector in ("#models", "#subnets", "#detail", "Footer"):
                region = app.screen.query_one(selector).region
                assert region.height >= 1 and region.bottom <= 24, selector
            await pilot.press("2")
            await pilot.pause()
            for selector in ("#members", "#path", "#launch", "#copy", "#status"):
                region = app.screen.query_one(selector).region
                assert region.height >= 1 and region.bottom <= 23, selector

    run(body)


def test_bare_ensui_opens_the_app(cli, monkeypatch, home):
    opened = []
    monkeypatch.setattr(EnsuiApp, "run", lambda self: opened.append((self.home, self.readonly)))
    assert cli()[0] == 0 and cli("--readonly")[0] == 0
    assert opened == [(resolve_home(), False), (resolve_home(), True)]


def test_serve_binds_localhost_and_warns(cli, monkeypatch, home):
    import textual_serve.server

    served = []

    class FakeServer:
        def __init__(self, command, host, port, title=None):
            served.append((command, host, port))

        def serve(self):
            pass

    monkeypatch.setattr(textual_serve.server, "Server", FakeServer)
    code, _, err = cli("serve")
    command, host, port = served[0]
    assert code == 0 and host == "127.0.0.1" and port == 8000
    assert command.endswith(f"-m ensui --home {home}") and "no authentication" in err
    cli("serve", "--host", "0.0.0.0", "--port", "9001", "--readonly")
    assert served[1][1:] == ("0.0.0.0", 9001) and served[1][0].endswith("--readonly")


# -- snapshots ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_catalog_snapshot(snap_compare, size):
    async def loaded(pilot):
        await settle(pilot)

    assert snap_compare(EnsuiApp(resolve_home()), terminal_size=size, run_before=loaded)


def test_a_catalog_from_a_newer_ensui_is_a_message_not_a_traceback(cli, home):
    import sqlite3

    Catalog(home / "catalog.db").close()
    conn = sqlite3.connect(home / "catalog.db")
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    code, _, err = cli()
    assert code == 2 and "newer than this ensui" in err and "Traceback" not in err
