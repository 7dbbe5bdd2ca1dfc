"""The history screen: past experiments newest first, a page at a time (name, id prefix,
created, members, jobs done/total); `enter` opens one's results; `x` marks two to show
their member accuracy per set side by side, with the difference."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState

from ensui.screens.data import catalog_of
from ensui.screens.jobs import fill_table
from ensui.screens.results import delta_cell
from ensui.screens.widgets import Read, VimTable

PAGE = 50


# -- plain data, read in threads -------------------------------------------------------

def read_history(home, offset: int, known: tuple | None) -> dict:
    """A page of experiments, or {"same": True} when nothing changed since `known`."""
    with catalog_of(home) as catalog:
        version = (tuple(sorted(catalog.counts().items())),
                   tuple(sorted(catalog.job_counts().items())), offset)
        if version == known:
            return {"same": True}
        rows = catalog.experiments_page(PAGE, offset)
    return {"rows": rows, "version": version}


def read_compare(home, ids: list[str]) -> dict:
    """Accuracy (%) per (member, set) of each experiment, rows in first-seen order."""
    with catalog_of(home) as catalog:
        names = [catalog.find_experiment(i)["name"] for i in ids]
        tables = [catalog.member_results(i) for i in ids]
    accuracy = [{(r["member"], r["val_set"]): 100 * r["accuracy"] for r in t} for t in tables]
    keys = list(dict.fromkeys(k for acc in accuracy for k in acc))
    return {"ids": ids, "names": names,
            "rows": [(m, s, *[acc.get((m, s)) for acc in accuracy]) for m, s in keys]}


def history_cells(row: dict, marked: list[str]) -> tuple:
    mark = f"[b]{marked.index(row['id']) + 1}[/]" if row["id"] in marked else ""
    jobs = f"{row['done']}/{row['total']}" + (f" ({row['failed']} failed)" if row["failed"] else "")
    return (mark, row["name"], row["id"][:8], row["created"].replace("T", " ")[:19],
            str(row["members"]), jobs)


def compare_rows(data: dict) -> list[tuple[str, tuple]]:
    rows = []
    for member, set_name, a, b in data["rows"]:
        rows.append((f"{member}|{set_name}",
                     (member, set_name, delta_cell(a, None), delta_cell(b, a))))
    return rows


# -- messages and the screen --------------------------------------------------------------

class HistoryRead(Read):
    """History data read in a thread."""


class CompareRead(Read):
    """Compare data read in a thread."""


class HistoryScreen(Screen):
    DEFAULT_CSS = """
    HistoryScreen #status { height: 1; }
    HistoryScreen #experiments { height: 1fr; }
    HistoryScreen #compare { height: 1fr; display: none; }
    HistoryScreen #compare.shown { display: block; }
    """
    BINDINGS = [
        Binding("enter", "open", "Open results"),
        Binding("x", "mark", "Mark to compare"),
        Binding("left_square_bracket", "page(-1)", "Prev page", key_display="["),
        Binding("right_square_bracket", "page(1)", "Next page", key_display="]"),
    ]

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self.marked: list[str] = []
        self.page_start = 0
        self.version: tuple | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading past experiments…", id="status")
        yield VimTable(id="experiments", cursor_type="row", zebra_stripes=True)
        yield VimTable(id="compare", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#experiments", DataTable).add_columns(
            "x", "name", "id", "created", "members", "jobs done")
        self.set_interval(1.0, self.poll)
        self.poll()

    def on_screen_resume(self) -> None:
        self.poll()

    def poll(self) -> None:
        if self.is_current:
            self._read(self.app.home, self.page_start, self.version)

    @work(thread=True, exclusive=True, group="history", exit_on_error=False)
    def _read(self, home, offset: int, known: tuple | None) -> None:
        self.post_message(HistoryRead(read_history(home, offset, known)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.version = None  # so the next poll reads again
            self.query_one("#status", Static).update(f"[red]read failed:[/] {event.worker.error}")

    def on_history_read(self, message: HistoryRead) -> None:
        if message.data.get("same"):
            return
        self.rows, self.version = message.data["rows"], message.data["version"]
        self._show_rows()
        first = self.page_start + 1
        self.query_one("#status", Static).update(
            f"experiments {first}–{self.page_start + len(self.rows)}, newest first   ·   "
            "enter opens, x marks two to compare" if self.rows else "no experiments yet")

    def _show_rows(self) -> None:
        fill_table(self.query_one("#experiments", DataTable),
                   [(r["id"], history_cells(r, self.marked)) for r in self.rows])

    def _highlighted(self) -> str | None:
        table = self.query_one("#experiments", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def action_open(self) -> None:
        exp = self._highlighted()
        if exp:
            self.app.show_results(exp)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "experiments":
            self.app.show_results(event.row_key.value)

    def action_mark(self) -> None:
        exp = self._highlighted()
        if exp is None:
            return
        self.marked = [m for m in self.marked if m != exp] if exp in self.marked else \
            (self.marked + [exp])[-2:]
        self._show_rows()
        if len(self.marked) == 2:
            self._compare(self.app.home, list(self.marked))
        else:
            self.query_one("#compare").remove_class("shown")

    @work(thread=True, exclusive=True, group="history-compare", exit_on_error=False)
    def _compare(self, home, ids: list[str]) -> None:
        self.post_message(CompareRead(read_compare(home, ids)))

    def on_compare_read(self, message: CompareRead) -> None:
        data = message.data
        if data["ids"] != self.marked:
            return
        table = self.query_one("#compare", DataTable)
        table.clear(columns=True)
        a, b = (f"{n} {i[:6]}" for n, i in zip(data["names"], data["ids"]))
        table.add_columns("member", "set", f"1: {a}", f"2: {b} (vs 1)")
        fill_table(table, compare_rows(data))
        table.add_class("shown")

    def action_page(self, step: int) -> None:
        if step > 0 and len(self.rows) < PAGE:
            return
        self.page_start = max(0, self.page_start + step * PAGE)
        self.version = None
        self.poll()
