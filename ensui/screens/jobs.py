"""The jobs screen: the queue paged from the catalog, the workers' lanes, the selected
job's training curve and log tail, and queue control (cancel, retry, run now).

Everything comes from the catalog, so jobs started by `ensui headless`, another app or a
cluster show up here too (reattaching is just reading). Reads run in thread workers on
their own connection, once a second, and come back as messages; control calls also run
in a thread, since cancelling a running job waits for its worker to stop.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState
from textual_plotext import PlotextPlot

from ensui.render import EPOCH_KINDS, VAL_NAMES, duration
from ensui.screens.data import catalog_of
from ensui.screens.views import load_view, remember
from ensui.screens.widgets import Read, VimTable

PAGE = 100
LOG_LINES = 20
LOG_BYTES = 16384
BAR = 8
STATES = ("", "running", "queued", "failed", "cancelled", "done")  # "" is every state
QUEUE_COLUMNS = ("key", "kind", "member", "set", "state", "device", "progress", "elapsed",
                 "CPU", "peak MB", "error")
STATE_MARK = {"failed": "red", "cancelled": "yellow", "running": "cyan", "done": "green"}


# -- plain data, built in threads ------------------------------------------------------

def progress_cell(job: dict) -> str:
    """`███░░░░░ 3/8` for a training job (bar and numbers, so no colour is needed)."""
    epochs = job.get("epochs")
    if job["kind"] not in EPOCH_KINDS or not epochs:
        return "done" if job["status"] == "done" else ""
    done = min(job.get("epoch") or 0, epochs)
    filled = round(BAR * done / epochs)
    return "█" * filled + "░" * (BAR - filled) + f" {done}/{epochs}"


def job_cells(job: dict, now: float) -> tuple:
    elapsed = (job["ended"] or now) - job["began"] if job.get("began") else None
    colour = STATE_MARK.get(job["status"], "default")
    return (job["key"][:10], " ".join(w for w in (job["kind"], job.get("method")) if w),
            job["member"], job.get("val_set") or "", f"[{colour}]{job['status']}[/]",
            job.get("device") or "", progress_cell(job), duration(elapsed),
            duration(job.get("cpu_s")),
            "—" if job.get("peak_rss_mb") is None else f"{job['peak_rss_mb']:.0f}",
            (job.get("error") or "")[:80])


def worker_cells(worker: dict, now: float) -> tuple:
    age = "—" if worker.get("heartbeat") is None else duration(now - worker["heartbeat"])
    return worker["lane"], worker["state"], (worker.get("job") or "idle")[:10], f"{age} ago"


def log_tail(path: str | None, lines: int = LOG_LINES) -> str:
    """The last lines of a log file, reading only its end."""
    if not path:
        return "(this job has no log yet)"
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, Path(path).stat().st_size - LOG_BYTES))
            text = fh.read().decode(errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc.strerror or exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def read_queue(home, state: str, offset: int) -> dict:
    with catalog_of(home) as catalog:
        return {"page": catalog.jobs_page(states=(state,) if state else (), limit=PAGE,
                                          offset=offset),
                "counts": catalog.job_counts(), "workers": catalog.workers(alive_only=True)}


def read_detail(home, key: str) -> dict:
    with catalog_of(home) as catalog:
        job = catalog.job(key) or {}
        epochs = catalog.epochs(key)
    return {"key": key, "epochs": epochs, "log": log_tail(job.get("log")), "job": job}


def fill_table(table: DataTable, rows: list[tuple[str, tuple]]) -> None:
    """Show `rows` (key, cells) keeping the cursor on its key and the scroll position:
    cells are updated in place while the keys stay the same, else the rows are rebuilt."""
    keys = [k for k, _ in rows]
    if keys == [r.value for r in table.rows]:
        for key, cells in rows:
            for column, cell in zip(table.columns, cells):
                if table.get_cell(key, column) != cell:
                    table.update_cell(key, column, cell, update_width=True)
        return
    current = _cursor_key(table)
    scroll_x, scroll_y = table.scroll_x, table.scroll_y
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if current in keys:
        table.move_cursor(row=keys.index(current), scroll=False)
    table.scroll_to(scroll_x, scroll_y, animate=False)


def _cursor_key(table: DataTable) -> str | None:
    if not table.row_count:
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


# -- messages and the confirmation modal ------------------------------------------------

class QueueRead(Read):
    """Queue data read in a thread."""


class DetailRead(Read):
    """Detail data read in a thread."""


class ControlDone(Message):
    def __init__(self, text: str, ok: bool = True):
        super().__init__()
        self.text, self.ok = text, ok


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no; `y`/`enter` confirm, `n`/`esc` decline."""

    DEFAULT_CSS = "ConfirmScreen { align: center middle; } " \
                  "ConfirmScreen > Static { width: 60; padding: 1 2; border: thick $warning; }"
    BINDINGS = [Binding("y,enter", "answer(True)", "Yes"),
                Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str):
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Static(f"{self.question}\n\n[b]y[/] yes    [b]n[/] no", id="question")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


# -- the screen --------------------------------------------------------------------------

class JobsScreen(Screen):
    DEFAULT_CSS = """
    JobsScreen #queue { height: 3fr; }
    JobsScreen #below { height: 2fr; min-height: 8; }
    JobsScreen #workers { width: 34; }
    JobsScreen #curve { width: 1fr; }
    JobsScreen #log { width: 1fr; border-left: solid $primary; padding: 0 1; overflow: hidden; }
    JobsScreen #status { height: 1; }
    """
    BINDINGS = [
        Binding("c", "cancel", "Cancel job"),
        Binding("r", "retry", "Retry"),
        Binding("n", "run_now", "Run now"),
        Binding("f", "next_state", "State filter"),
        Binding("left_square_bracket", "page(-1)", "Prev page", key_display="["),
        Binding("right_square_bracket", "page(1)", "Next page", key_display="]"),
        Binding("escape", "app.switch_mode('catalog')", "Back", show=False),
    ]

    def __init__(self):
        super().__init__()
        self.jobs: dict[str, dict] = {}
        self.selected: str | None = None
        self.state, self.page_start = "", 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the queue…", id="status")
        yield VimTable(id="queue", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="below"):
            yield VimTable(id="workers", cursor_type="none", show_cursor=False)
            yield PlotextPlot(id="curve")
            with Vertical(id="log"):
                yield Static("", id="log-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#queue", DataTable).add_columns(*QUEUE_COLUMNS)
        self.query_one("#workers", DataTable).add_columns("lane", "state", "job", "beat")
        saved = load_view(self.app.home, "jobs").get("state")
        self.state = saved if saved in STATES else self.state
        self.set_interval(1.0, self.poll)
        self.poll()

    def on_screen_resume(self) -> None:
        self.poll()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("cancel", "retry", "run_now") and self.app.readonly:
            return None  # shown, but disabled: a read-only session controls nothing
        return True

    # -- polling --------------------------------------------------------------

    def poll(self) -> None:
        if not self.is_current:
            return
        self._read_queue(self.app.home, self.state, self.page_start)
        if self.selected:
            self._read_detail(self.app.home, self.selected)

    @work(thread=True, exclusive=True, group="jobs-queue", exit_on_error=False)
    def _read_queue(self, home, state: str, offset: int) -> None:
        self.post_message(QueueRead(read_queue(home, state, offset)))

    @work(thread=True, exclusive=True, group="jobs-detail", exit_on_error=False)
    def _read_detail(self, home, key: str) -> None:
        self.post_message(DetailRead(read_detail(home, key)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A failed read shows in the status line (the next poll retries); a failed
        control call is told once."""
        if event.state != WorkerState.ERROR:
            return
        if event.worker.group == "jobs-control":
            self.notify(f"failed: {event.worker.error}", severity="error")
        else:
            self.query_one("#status", Static).update(f"[red]read failed:[/] {event.worker.error}")

    def on_queue_read(self, message: QueueRead) -> None:
        now = time.time()
        data = message.data
        self.jobs = {j["key"]: j for j in data["page"]}
        fill_table(self.query_one("#queue", DataTable),
                   [(j["key"], job_cells(j, now)) for j in data["page"]])
        fill_table(self.query_one("#workers", DataTable),
                   [(w["id"], worker_cells(w, now)) for w in data["workers"]])
        counts = "  ".join(f"{s} {data['counts'].get(s, 0)}" for s in STATES[1:])
        page = f"page {self.page_start // PAGE + 1}"
        self.query_one("#status", Static).update(
            f"{self.state or 'all states'} · {page} · {counts}"
            + (" · [b]read-only[/]" if self.app.readonly else ""))
        if self.selected not in self.jobs:
            self._select(_cursor_key(self.query_one("#queue", DataTable)))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "queue" and event.row_key is not None:
            self._select(event.row_key.value)

    def _select(self, key: str | None) -> None:
        if key != self.selected:
            self.selected = key
            if key:
                self._read_detail(self.app.home, key)

    def on_detail_read(self, message: DetailRead) -> None:
        data = message.data
        if data["key"] != self.selected:
            return
        self.query_one("#log-text", Static).update(data["log"])
        self._plot(data["job"], data["epochs"])

    def _plot(self, job: dict, epochs: list[dict]) -> None:
        plot = self.query_one("#curve", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        acc = f"{VAL_NAMES.get(job.get('kind'), 'val')} acc"
        what = f"loss, {acc} (right)" if epochs else "no epochs recorded"
        plt.title(f"{job.get('member', '')} {job.get('kind', '')}: {what}")
        if epochs:
            xs = [e["epoch"] for e in epochs]
            plt.plot(xs, [e["loss"] for e in epochs], label="loss", marker="braille")
            for name, label in (("teacher_entropy", "teacher entropy"),  # DINO's collapse check
                                ("disagreement", "disagreement")):  # a joint team's diversity
                if all(e.get(name) is not None for e in epochs):
                    plt.plot(xs, [e[name] for e in epochs], label=label, marker="braille")
            accs = [e["val_acc"] for e in epochs if e.get("val_acc") is not None]
            if accs:
                plt.plot(xs[-len(accs):], accs, label=acc, yside="right", marker="braille")
            if all(e.get("min_subnet_acc") is not None for e in epochs):  # a supernet stage
                plt.plot(xs, [e["min_subnet_acc"] for e in epochs], label="min sub-net acc",
                         yside="right", marker="braille")
        plot.refresh()

    # -- control --------------------------------------------------------------

    def _chosen(self) -> dict | None:
        job = self.jobs.get(self.selected or "")
        if job is None:
            self.notify("no job selected", severity="warning")
        return job

    def action_cancel(self) -> None:
        job = self._chosen()
        if job is None:
            return
        question = (f"Cancel {job['kind']} job {job['key'][:10]} of {job['member']} "
                    f"({job['status']})?")

        def answered(yes: bool | None) -> None:
            if yes:
                self._cancel(self.app.home, job)

        self.app.push_screen(ConfirmScreen(question), answered)

    @work(thread=True, group="jobs-control", exit_on_error=False)
    def _cancel(self, home, job: dict) -> None:
        from ensui.engine.runtime.control import cancel

        with catalog_of(home) as catalog:
            state = cancel(catalog, job, "cancelled from the app")
        self.post_message(ControlDone(f"job {job['key'][:10]}: {state}"))

    def action_retry(self) -> None:
        job = self._chosen()
        if job:
            self._control(self.app.home, "retry_job", job["key"], "re-queued",
                          "only a failed or cancelled job can be retried")

    def action_run_now(self) -> None:
        job = self._chosen()
        if job:
            self._control(self.app.home, "run_now", job["key"], "first in the queue",
                          "a done job is not re-run")

    @work(thread=True, group="jobs-control", exit_on_error=False)
    def _control(self, home, method: str, key: str, done: str, refused: str) -> None:
        with catalog_of(home) as catalog:
            ok = getattr(catalog, method)(key)
        self.post_message(ControlDone(f"job {key[:10]}: {done if ok else refused}", ok))

    def on_control_done(self, message: ControlDone) -> None:
        self.notify(message.text, severity="information" if message.ok else "warning")
        self.poll()

    def action_next_state(self) -> None:
        self.state = STATES[(STATES.index(self.state) + 1) % len(STATES)]
        remember(self, "jobs", {"state": self.state})
        self.page_start = 0
        self.poll()

    def action_page(self, step: int) -> None:
        if step > 0 and len(self.jobs) < PAGE:
            return
        self.page_start = max(0, self.page_start + step * PAGE)
        self.poll()
