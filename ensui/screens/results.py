"""The results screen of one experiment (`app.experiment`, or the newest): member
accuracy per validation set beside the paper's reported top-1, with a pinned baseline
and signed deltas; the teams table (sort, filter, only the columns that differ); the
Figure B heatmap, whose cells open the teams behind each correlation; pairwise
member × member heatmaps per metric and set, whose cells open the pair's right/wrong
table from the cached outputs (both in `drilldown.py`); the λ sweep of jointly trained
teams beside independently trained ones; the sub-network search's front, whose points
save as catalog sub-networks (`front.py`); CSV export of the table in view.
The sort, filter, baseline, columns, tab and heatmap choice persist between sessions.

The catalog is read in a thread worker once a second while jobs are unfinished (every
few seconds after), so the tables fill in as jobs finish.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Static,
    TabbedContent,
    TabPane,
)
from textual.worker import Worker, WorkerState

from ensui.render import SHARED_KINDS, sweep_display
from ensui.screens.data import catalog_of
from ensui.screens.drilldown import CorrelationScreen, PairScreen, correlation_points
from ensui.screens.front import FrontPane
from ensui.screens.heatmap import Heatmap
from ensui.screens.jobs import fill_table
from ensui.screens.views import load_view, remember, typed
from ensui.screens.widgets import VimTable

IDLE_REREAD_S = 5.0
TABS = ("accuracy-tab", "teams-tab", "figure-b-tab", "pairwise-tab", "sweep-tab",
        "front-tab")
SWEEP_COLUMNS = ("ensemble", "loss", "set", "consensus", "acc %", "gain", "drop", "disagree",
                 "attrib", "activ", "gncl")
TAB_ACTIONS = {"pin": "accuracy-tab", "sort": "teams-tab", "differing": "teams-tab",
               "pair_metric": "pairwise-tab", "pair_set": "pairwise-tab",
               "save_point": "front-tab"}
STATE_ORDER = ("failed", "running", "queued", "cancelled", "done")
HIDDEN_TEAM_COLUMNS = ("experiment_id",)


# -- plain data, read in threads -----------------------------------------------------------

def read_results(home, ref: str | None) -> dict:
    """Everything the screen shows of an experiment, as plain data."""
    from ensui.errors import UnknownIdError

    with catalog_of(home) as catalog:
        try:
            exp = catalog.find_experiment(ref) if ref else catalog.newest_experiment()
        except UnknownIdError as exc:
            return {"missing": str(exc)}
        if exp is None:
            return {"missing": "no experiment recorded yet"}
        jobs = [j for j in catalog.experiment_jobs(exp["id"]) if j["kind"] not in SHARED_KINDS]
        data = _members(catalog, jobs, catalog.member_results(exp["id"]))
        data.update(experiment={k: exp[k] for k in ("id", "name", "created")},
                    teams=[{k: v for k, v in r.items() if k not in HIDDEN_TEAM_COLUMNS}
                           for r in catalog.team_results(exp["id"])],
                    figure_b=catalog.figure_b(exp["id"]),
                    pairwise=catalog.pairwise_matrices(exp["id"]),
                    sweep=catalog.sweep_results(exp["id"]),
                    front=catalog.front(exp["id"]),
                    progress=catalog.experiment_progress(exp["id"]))
    return data


def _members(catalog, jobs: list[dict], results: list[dict]) -> dict:
    members = list(dict.fromkeys(j["label"] for j in jobs))
    evals = [j for j in jobs if j["kind"] == "evaluate"]
    sets = list(dict.fromkeys(j["params"]["val_set"] for j in evals))
    accuracy = {m: {} for m in members}
    for r in results:
        accuracy.setdefault(r["member"], {})[r["val_set"]] = 100 * r["accuracy"]
    states = {m: [j["status"] for j in jobs if j["label"] == m] for m in members}
    models = {j["label"]: j["model_id"] for j in jobs}
    return {"members": members, "sets": sets, "accuracy": accuracy, "models": models,
            "reported": {m: _reported(catalog, models[m]) for m in members},
            "state": {m: next((s for s in STATE_ORDER if s in states[m]), "—") for m in members},
            "evals": {f"{j['label']}|{j['params']['val_set']}":
                      (j["key"], j["params"].get("store", "logits")) for j in evals}}


def _reported(catalog, model_id: str) -> float | None:
    from ensui.errors import UnknownIdError

    try:
        return catalog.member_row(model_id)["reported_top1"]
    except UnknownIdError:
        return None


def team_view(rows: list[dict], sort: str | None, descending: bool, needle: str,
              only_differing: bool) -> tuple[list[str], list[list]]:
    """Columns and rows of the teams table: filtered by a substring of any cell, sorted
    (missing values last), and without the columns whose values are all the same."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    needle = needle.strip().lower()
    chosen = [r for r in rows if not needle or any(needle in _cell(v).lower() for v in r.values())]
    if sort in columns:
        present = [r for r in chosen if r.get(sort) is not None]
        present.sort(key=lambda r: r[sort], reverse=descending)
        chosen = present + [r for r in chosen if r.get(sort) is None]
    if only_differing and len(chosen) > 1:
        columns = [c for c in columns if c == "team" or
                   len({_cell(r.get(c)) for r in chosen}) > 1]
    return columns, [[r.get(c) for c in columns] for r in chosen]


def _cell(value) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def delta_cell(value: float | None, base: float | None) -> str:
    """`81.2 +1.3` with the delta green (better) or red (worse); the sign says it too."""
    if value is None:
        return "—"
    if base is None:
        return f"{value:.1f}"
    delta = value - base
    colour = "green" if delta > 0 else "red" if delta < 0 else "default"
    return f"{value:.1f} [{colour}]{delta:+.1f}[/]"


def accuracy_rows(data: dict, pinned: str | None) -> list[tuple[str, tuple]]:
    base = data["accuracy"].get(pinned, {}) if pinned in data["members"] else {}
    rows = []
    for m in data["members"]:
        acc = data["accuracy"].get(m, {})
        reference = None if m == pinned else base
        cells = [delta_cell(acc.get(s), (reference or {}).get(s)) for s in data["sets"]]
        reported = data["reported"][m]
        label = f"{m} [b](baseline)[/]" if m == pinned else m
        rows.append((m, (label, data["models"][m], "—" if reported is None else f"{reported:.1f}",
                         *cells, data["state"][m])))
    return rows


def sweep_rows(rows: list[dict], improvement: str) -> list[tuple[str, tuple]]:
    """The λ sweep table's (key, cells): accuracy, gain and drop in points."""
    def points(value, fmt):
        return "—" if value is None else fmt.format(100 * value)

    return [(f"{r['group']}|{r['team']}|{r['val_set']}|{r['consensus']}",
             (r["team"], r["loss"], r["val_set"], r["consensus"], points(r["accuracy"], "{:.1f}"),
              points(r.get(improvement), "{:+.1f}"), points(r["drop"], "{:.1f}"),
              *[_cell(r.get(m)) for m in ("label_disagreement", "attribution_diversity",
                                          "activation_diversity", "gncl_diversity")]))
            for r in sweep_display(rows, "val_set")]


def write_csv(rows: list[dict], folder: Path, name: str) -> Path:
    from ensui.engine.export import export_tables

    return export_tables({name: rows}, folder, "csv")[0]


# -- messages and the pair modal -----------------------------------------------------------

class ResultsRead(Message):
    def __init__(self, data: dict, ref: str | None):
        super().__init__()
        self.data, self.ref = data, ref


class Notice(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


# -- the screen ------------------------------------------------------------------------------

class ResultsScreen(Screen):
    DEFAULT_CSS = """
    ResultsScreen #title { height: 1; }
    ResultsScreen TabbedContent { height: 1fr; }
    ResultsScreen TabPane { height: 1fr; padding: 0; }
    ResultsScreen #filter { display: none; }
    ResultsScreen #filter.shown { display: block; }
    ResultsScreen DataTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("left_square_bracket", "tab(-1)", "Prev tab", key_display="["),
        Binding("right_square_bracket", "tab(1)", "Next tab", key_display="]"),
        Binding("p", "pin", "Pin baseline"),
        Binding("s", "sort", "Sort"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("v", "differing", "Differing cols"),
        Binding("m", "pair_metric", "Metric"),
        Binding("t", "pair_set", "Set"),
        Binding("a", "save_point", "Save as subnet"),
        Binding("e", "export", "Export CSV"),
        Binding("escape", "close_filter", "Back", show=False),
    ]

    def __init__(self):
        super().__init__()
        self.data: dict = {}
        self.ref: str | None = None
        self.pinned: str | None = None
        self.sort: str | None = None
        self.descending = True
        self.needle, self.only_differing, self.editing_filter = "", False, False
        self.metric, self.set_index = 0, 0
        self.wanted_pair: tuple[str | None, str | None] = (None, None)  # saved, not yet shown
        self.restored = False
        self._last_read = 0.0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading results…", id="title")
        with TabbedContent(id="tabs"):
            with TabPane("Accuracy", id="accuracy-tab"):
                yield VimTable(id="accuracy", cursor_type="row")
            with TabPane("Teams", id="teams-tab"):
                yield Input(placeholder="filter teams (any cell contains…)", id="filter")
                yield VimTable(id="teams", cursor_type="row", zebra_stripes=True)
            with TabPane("Figure B", id="figure-b-tab"):
                yield Heatmap(id="figure-b")
            with TabPane("Pairwise", id="pairwise-tab"):
                yield Heatmap(id="pairwise")
            with TabPane("λ sweep", id="sweep-tab"):
                yield VimTable(id="sweep", cursor_type="row", zebra_stripes=True)
            with TabPane("Front", id="front-tab"):
                yield FrontPane(id="front-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#sweep", DataTable).add_columns(*SWEEP_COLUMNS)
        self._restore_view()
        self.set_interval(1.0, self.poll)
        self.poll()

    # -- the view kept between sessions -------------------------------------------

    def _restore_view(self) -> None:
        view = load_view(self.app.home, "results")
        self.pinned = typed(view, "pinned", str, None)
        self.sort = typed(view, "sort", str, None)
        self.descending = typed(view, "descending", bool, True)
        self.only_differing = typed(view, "only_differing", bool, False)
        self.wanted_pair = (typed(view, "metric", str, None), typed(view, "set", str, None))
        self.needle = typed(view, "filter", str, "")
        if self.needle:
            box = self.query_one("#filter", Input)
            box.value = self.needle
            box.add_class("shown")
        if typed(view, "tab", str, None) in TABS:
            self.query_one("#tabs", TabbedContent).active = view["tab"]
        self.restored = True

    def _remember(self) -> None:
        if not self.restored:  # events of the first mount must not overwrite the saved view
            return
        metric, set_name = self._pair_names()
        view = {"pinned": self.pinned, "sort": self.sort, "descending": self.descending,
                "only_differing": self.only_differing, "filter": self.needle,
                "tab": self.query_one("#tabs", TabbedContent).active,
                "metric": metric, "set": set_name}
        remember(self, "results", view)

    def on_screen_resume(self) -> None:
        self.poll(force=True)

    # -- reading ------------------------------------------------------------------

    def poll(self, force: bool = False) -> None:
        ref = self.app.experiment
        unfinished = any(s in self.data.get("progress", {}) for s in ("queued", "running"))
        due = unfinished or time.monotonic() - self._last_read > IDLE_REREAD_S
        if self.is_current and (force or due or ref != self.ref or not self.data):
            self._last_read = time.monotonic()
            self._read(self.app.home, ref)

    @work(thread=True, exclusive=True, group="results", exit_on_error=False)
    def _read(self, home, ref: str | None) -> None:
        self.post_message(ResultsRead(read_results(home, ref), ref))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A failed read shows in the title line (the next poll retries); a failed
        export is told once."""
        if event.state != WorkerState.ERROR:
            return
        if event.worker.group == "export":
            self.notify(f"export failed: {event.worker.error}", severity="error")
        else:
            self.query_one("#title", Static).update(f"[red]read failed:[/] {event.worker.error}")

    def on_results_read(self, message: ResultsRead) -> None:
        if message.ref != self.app.experiment:
            return
        fresh = message.ref != self.ref  # the view carries over; a missing pin is ignored
        self.ref = message.ref
        if message.data == self.data:
            return
        teams_changed = fresh or message.data.get("teams") != self.data.get("teams")
        self.data = message.data
        if "missing" in self.data:
            self.query_one("#title", Static).update(f"no results: {self.data['missing']}")
            return
        self._show_title()
        self._show_accuracy()
        if teams_changed:
            self._show_teams()
        self._show_figure_b()
        self._show_pairwise()
        fill_table(self.query_one("#sweep", DataTable), sweep_rows(
            self.data["sweep"], self.data["figure_b"]["improvement"] or "vs_mean"))
        self.query_one(FrontPane).show(self.data["front"])

    def _show_title(self) -> None:
        exp, progress = self.data["experiment"], self.data["progress"]
        done, total = progress.get("done", 0), sum(progress.values())
        study = "study recorded" if self.data["teams"] else "no study yet"
        self.query_one("#title", Static).update(
            f"[b]{exp['name']}[/] {exp['id'][:8]} · {exp['created'][:16].replace('T', ' ')} · "
            f"jobs {done}/{total} done"
            f" · {study}")

    def _show_accuracy(self) -> None:
        table = self.query_one("#accuracy", DataTable)
        columns = ["member", "model", "paper top-1", *self.data["sets"], "state"]
        if [str(c.label) for c in table.columns.values()] != columns:
            table.clear(columns=True)
            table.add_columns(*columns)
        fill_table(table, accuracy_rows(self.data, self.pinned))

    def _team_view(self) -> tuple[list[str], list[list]]:
        return team_view(self.data.get("teams", []), self.sort, self.descending, self.needle,
                         self.only_differing)

    def _show_teams(self) -> None:
        table = self.query_one("#teams", DataTable)
        columns, rows = self._team_view()
        marks = {True: " ▼", False: " ▲"}
        labels = [c + (marks[self.descending] if c == self.sort else "") for c in columns]
        table.clear(columns=True)
        for label, key in zip(labels, columns):
            table.add_column(label, key=key)
        for row in rows:
            table.add_row(*[_cell(v) for v in row])

    def _show_figure_b(self) -> None:
        fig = self.data["figure_b"]
        title = (f"Figure B: Pearson r of each metric with {fig['improvement'] or 'improvement'}"
                 f" ({fig['consensus'] or 'no'} consensus)")
        self.query_one("#figure-b", Heatmap).set_data(fig["metrics"], fig["sets"], fig["values"],
                                                      "diverging", title, limits=(-1.0, 1.0))

    def _pairwise_choices(self) -> tuple[list[str], list[str]]:
        pairs = self.data.get("pairwise", [])
        return (list(dict.fromkeys(p["metric"] for p in pairs)),
                list(dict.fromkeys(p["val_set"] for p in pairs)))

    def _pair_names(self) -> tuple[str | None, str | None]:
        metrics, sets = self._pairwise_choices()
        if not metrics:
            return self.wanted_pair
        return metrics[self.metric % len(metrics)], sets[self.set_index % len(sets)]

    def _current_pair_matrix(self) -> dict | None:
        metrics, sets = self._pairwise_choices()
        if not metrics:
            return None
        metric, set_name = self.wanted_pair
        if metric in metrics or set_name in sets:  # the saved choice, once it exists
            self.metric = metrics.index(metric) if metric in metrics else self.metric
            self.set_index = sets.index(set_name) if set_name in sets else self.set_index
            self.wanted_pair = (None, None)
        metric, set_name = metrics[self.metric % len(metrics)], sets[self.set_index % len(sets)]
        return next((p for p in self.data["pairwise"]
                     if p["metric"] == metric and p["val_set"] == set_name), None)

    def _show_pairwise(self) -> None:
        heatmap = self.query_one("#pairwise", Heatmap)
        pair = self._current_pair_matrix()
        if pair is None:
            heatmap.set_data([], [], [], title="pairwise: no study recorded yet")
            return
        values = pair["matrix"]
        signed = any(v is not None and v < 0 for line in values for v in line)
        heatmap.set_data(pair["members"], pair["members"], values,
                         "diverging" if signed else "sequential",
                         f"{pair['metric']} on {pair['val_set']}   (m metric, t set, enter pair)",
                         fmt="{:+.2f}" if signed else "{:.2f}")

    # -- keys ---------------------------------------------------------------------

    def action_tab(self, step: int) -> None:
        tabs = self.query_one("#tabs", TabbedContent)
        tabs.active = TABS[(TABS.index(tabs.active) + step) % len(TABS)]
        self._focus_tab(tabs.active)

    def _focus_tab(self, tab: str) -> None:
        widget = {"accuracy-tab": "#accuracy", "teams-tab": "#teams",
                  "figure-b-tab": "#figure-b", "pairwise-tab": "#pairwise",
                  "sweep-tab": "#sweep", "front-tab": "#front"}[tab]
        if tab == "teams-tab" and self.editing_filter:
            widget = "#filter"
        self.query_one(widget).focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.call_after_refresh(self._focus_tab, event.pane.id)
        self.refresh_bindings()
        self._remember()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Keys of one tab only show (and act) on that tab."""
        if action not in TAB_ACTIONS or not self.is_mounted:
            return True
        if action == "save_point" and self.app.readonly:
            return None  # shown, but disabled: a read-only session writes nothing
        return self.query_one("#tabs", TabbedContent).active == TAB_ACTIONS[action]

    def action_pin(self) -> None:
        table = self.query_one("#accuracy", DataTable)
        if not table.row_count:
            return
        member = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.pinned = None if member == self.pinned else member
        fill_table(table, accuracy_rows(self.data, self.pinned))
        self._remember()
        self.notify(f"baseline: {self.pinned}" if self.pinned else "baseline unpinned")

    def action_sort(self) -> None:
        columns = list(dict.fromkeys(k for r in self.data.get("teams", []) for k in r))
        if not columns:
            return
        following = columns.index(self.sort) + 1 if self.sort in columns else 0
        self._sort_by(columns[following % len(columns)], None)

    def _sort_by(self, column: str, descending: bool | None) -> None:
        if descending is None:
            sample = next((r[column] for r in self.data["teams"] if r.get(column) is not None), "")
            descending = isinstance(sample, (int, float))
        self.sort, self.descending = column, descending
        self._show_teams()
        self._remember()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.data_table.id == "teams":
            column = event.column_key.value
            self._sort_by(column, not self.descending if column == self.sort else None)

    def action_filter(self) -> None:
        self.editing_filter = True
        self.query_one("#tabs", TabbedContent).active = "teams-tab"
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.needle = event.value
            self._show_teams()
            self._remember()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.editing_filter = False
            self.query_one("#teams").focus()

    def action_close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        self.editing_filter = False
        if box.has_class("shown"):
            box.value = ""
            box.remove_class("shown")
            self.query_one("#teams").focus()
        else:
            self.app.switch_mode("history")

    def action_differing(self) -> None:
        self.only_differing = not self.only_differing
        self._show_teams()
        self._remember()
        self.notify("only columns that differ" if self.only_differing else "every column")

    def action_pair_metric(self) -> None:
        self.metric += 1
        self._show_pairwise()
        self._remember()

    def action_pair_set(self) -> None:
        self.set_index += 1
        self._show_pairwise()
        self._remember()

    def on_heatmap_selected(self, event: Heatmap.Selected) -> None:
        if event.heatmap.id == "figure-b":
            self._open_correlation(event.row, event.col)
            return
        pair = self._current_pair_matrix()
        if pair is None:
            return
        a, b = pair["members"][event.row], pair["members"][event.col]
        keys = [self.data["evals"].get(f"{m}|{pair['val_set']}") for m in (a, b)]
        if a == b or None in keys:
            self.notify("pick two different members evaluated on this set", severity="warning")
            return
        self.app.push_screen(PairScreen(self.app.home, pair["val_set"], (a, b), tuple(keys)))

    def _open_correlation(self, row: int, col: int) -> None:
        fig = self.data["figure_b"]
        metric, set_name = fig["metrics"][row], fig["sets"][col]
        improvement = fig["improvement"] or "vs_mean"
        points = correlation_points(self.data["teams"], metric, set_name, fig["consensus"],
                                    improvement)
        self.app.push_screen(CorrelationScreen(metric, set_name, improvement, points,
                                               fig.get("stats", {}).get(f"{metric}|{set_name}")))

    def action_save_point(self) -> None:
        index = self.query_one(FrontPane).selected()
        if index is None or "experiment" not in self.data:
            return
        exp = self.data["experiment"]
        self._save_point(exp, index, f"{exp['name']}-{exp['id'][:4]}-{index}")

    @work(thread=True, group="save", exit_on_error=False)
    def _save_point(self, exp: dict, index: int, name: str) -> None:
        from ensui.errors import EnsuiError

        try:
            with catalog_of(self.app.home) as catalog:
                catalog.save_front_point(catalog.find_experiment(exp["id"]), index, name)
            self.post_message(Notice(f"saved front point #{index} as sub-network {name}"))
        except EnsuiError as exc:
            self.post_message(Notice(f"not saved: {exc}"))

    # -- export -------------------------------------------------------------------

    def _table_in_view(self) -> tuple[str, list[dict]]:
        focused = self.focused.id if self.focused else None
        tab = self.query_one("#tabs", TabbedContent).active
        name = focused if focused in ("accuracy", "teams", "figure-b", "pairwise", "sweep",
                                      "front") else \
            tab.removesuffix("-tab")
        return name, getattr(self, f"_rows_{name.replace('-', '_')}")()

    def _rows_accuracy(self) -> list[dict]:
        d = self.data
        return [{"member": m, "model_id": d["models"][m], "reported_top1": d["reported"][m],
                 **{s: d["accuracy"].get(m, {}).get(s) for s in d["sets"]},
                 "state": d["state"][m]} for m in d.get("members", [])]

    def _rows_teams(self) -> list[dict]:
        columns, rows = self._team_view()
        return [dict(zip(columns, row)) for row in rows]

    def _rows_figure_b(self) -> list[dict]:
        fig = self.data.get("figure_b") or {"metrics": [], "sets": [], "values": []}
        return [{"metric": m, **dict(zip(fig["sets"], line))}
                for m, line in zip(fig["metrics"], fig["values"])]

    def _rows_pairwise(self) -> list[dict]:
        pair = self._current_pair_matrix()
        if pair is None:
            return []
        return [{"member": m, **dict(zip(pair["members"], line))}
                for m, line in zip(pair["members"], pair["matrix"])]

    def _rows_front(self) -> list[dict]:
        return [{k: v for k, v in p.items() if k != "job_key"}
                for p in self.data.get("front", [])]

    def _rows_sweep(self) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in HIDDEN_TEAM_COLUMNS}
                for r in self.data.get("sweep", [])]

    def action_export(self) -> None:
        if "experiment" not in self.data:
            return
        name, rows = self._table_in_view()
        if not rows:
            self.notify(f"{name}: nothing to export yet", severity="warning")
            return
        if name == "pairwise":
            pair = self._current_pair_matrix()
            name = f"pairwise-{pair['metric']}-{pair['val_set']}"
        exp = self.data["experiment"]
        self._export(rows, Path.cwd() / f"{exp['name']}-{exp['id'][:8]}", name)

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, rows: list[dict], folder: Path, name: str) -> None:
        self.post_message(Notice(f"wrote {write_csv(rows, folder, name)}"))

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, timeout=8)
