"""What a results heatmap cell opens: for a pairwise cell, the two members' 2×2
right/wrong table from their cached outputs and the samples where only one is right;
for a Figure B cell, the teams behind the correlation — each team's diversity against
its improvement as a scatter, with the statistics the study recorded.
"""

from __future__ import annotations

from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static
from textual.worker import Worker, WorkerState
from textual_plotext import PlotextPlot

from ensui.screens.widgets import Read

SAMPLES = 20


# -- plain data ------------------------------------------------------------------------------

def pair_counts(a, b, limit: int = SAMPLES) -> dict:
    """The 2×2 right/wrong counts of two members' outputs (aligned by sample id) and up
    to `limit` ids where only one of them is right."""
    import numpy as np

    if np.array_equal(a.ids, b.ids):
        ia = ib = np.arange(len(a.ids))
    else:
        where = {i: k for k, i in enumerate(b.ids)}
        ia = np.array([k for k, i in enumerate(a.ids) if i in where], dtype=np.int64)
        ib = np.array([where[i] for i in a.ids[ia]], dtype=np.int64)
    ra = a.values[ia].argmax(1) == a.labels[ia]
    rb = b.values[ib].argmax(1) == b.labels[ib]
    only = np.flatnonzero(ra != rb)[:limit]
    return {"n": len(ia), "both": int((ra & rb).sum()), "a_only": int((ra & ~rb).sum()),
            "b_only": int((~ra & rb).sum()), "neither": int((~ra & ~rb).sum()),
            "samples": [(str(a.ids[ia[k]]), "a" if ra[k] else "b") for k in only]}


def read_pair(home, a: tuple[str, str], b: tuple[str, str]) -> dict:
    """`pair_counts` of two evaluations given as (job key, store)."""
    from ensui.engine.evaluate import load_outputs

    outputs = [load_outputs(home.outputs / key, store) for key, store in (a, b)]
    if any(o is None for o in outputs):
        return {"error": "a member's cached outputs are missing or damaged"}
    return pair_counts(*outputs)


def correlation_points(teams: list[dict], metric: str, set_name: str, consensus: str | None,
                       improvement: str) -> list[tuple[float, float, str]]:
    """(diversity, improvement, team) of every team the Figure B cell correlates: the
    set's teams under the figure's consensus, of every size, with both values present."""
    return [(r[metric], r[improvement], str(r["team"])) for r in teams
            if r.get("val_set") == set_name and r.get("consensus") == consensus
            and r.get(metric) is not None and r.get(improvement) is not None]


def correlation_text(stats: dict | None) -> str:
    """The recorded statistics of one cell, in one or two lines."""
    if not stats:
        return "no statistics recorded for this cell"

    def num(key: str, fmt: str = "{:+.3f}") -> str:
        value = stats.get(key)
        return "—" if value is None else fmt.format(value)

    return (f"Pearson r {num('pearson_r')} (95% CI {num('pearson_ci_low')} … "
            f"{num('pearson_ci_high')}, p {num('pearson_p', '{:.3g}')})   "
            f"Spearman ρ {num('spearman_r')} (p {num('spearman_p', '{:.3g}')})   "
            f"n {stats.get('n', '—')} teams")


# -- the pair modal --------------------------------------------------------------------------

class PairRead(Read):
    """Pair data read in a thread."""


class PairScreen(ModalScreen):
    """Two members on one set: right/wrong counts and samples where only one is right."""

    DEFAULT_CSS = "PairScreen { align: center middle; } " \
                  "PairScreen #pair-box { width: 72; height: auto; max-height: 90%; " \
                  "padding: 1 2; border: thick $accent; }"
    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, home, set_name: str, members: tuple[str, str], evals: tuple):
        super().__init__()
        self.home, self.set_name, self.members, self.evals = home, set_name, members, evals
        self.counts: dict | None = None

    def compose(self) -> ComposeResult:
        a, b = self.members
        with VerticalScroll(id="pair-box"):
            yield Static(f"{a} × {b} on {self.set_name}: reading the cached outputs…", id="pair")

    def on_mount(self) -> None:
        self._read(self.home, *self.evals)

    @work(thread=True, exclusive=True, group="pair", exit_on_error=False)
    def _read(self, home, a: tuple, b: tuple) -> None:
        self.post_message(PairRead(read_pair(home, a, b)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.query_one("#pair", Static).update(f"[red]could not read the outputs:[/] "
                                                   f"{event.worker.error}")

    def on_pair_read(self, message: PairRead) -> None:
        self.counts = {k: message.data[k] for k in ("both", "a_only", "b_only", "neither")
                       if k in message.data}
        self.query_one("#pair", Static).update(self._pair_view(message.data))

    def _pair_view(self, data: dict):
        from rich.console import Group

        a, b = self.members
        if "error" in data:
            return f"[red]{data['error']}[/]"
        table = Table(title=f"{a} × {b} on {self.set_name} ({data['n']} samples)")
        table.add_column("")
        table.add_column(f"{b} right", justify="right")
        table.add_column(f"{b} wrong", justify="right")
        table.add_row(f"{a} right", str(data["both"]), str(data["a_only"]))
        table.add_row(f"{a} wrong", str(data["b_only"]), str(data["neither"]))
        lines = [f"{sid}  only {a if who == 'a' else b} right" for sid, who in data["samples"]]
        head = f"\nsamples where only one is right (first {SAMPLES}):" if lines else \
            "\nno sample where only one is right"
        return Group(table, head, *lines, "\n[dim]esc closes[/]")


# -- the correlation modal -------------------------------------------------------------------

class CorrelationScreen(ModalScreen):
    """One Figure B cell: the teams' diversity against their improvement on one set."""

    DEFAULT_CSS = """
    CorrelationScreen { align: center middle; }
    CorrelationScreen #corr-box { width: 90%; height: 80%; padding: 0 1;
                                  border: thick $accent; }
    CorrelationScreen #corr-stats { height: auto; }
    CorrelationScreen PlotextPlot { height: 1fr; }
    """
    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, metric: str, set_name: str, improvement: str,
                 points: list[tuple[float, float, str]], stats: dict | None):
        super().__init__()
        self.metric, self.set_name, self.improvement = metric, set_name, improvement
        self.points, self.stats = points, stats

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="corr-box"):
            yield Static(f"[b]{self.metric}[/] vs [b]{self.improvement}[/] on "
                         f"[b]{self.set_name}[/]\n{correlation_text(self.stats)}",
                         id="corr-stats")
            yield PlotextPlot(id="corr-plot")
            yield Static("[dim]each point is a team · esc closes[/]")

    def on_mount(self) -> None:
        plt = self.query_one(PlotextPlot).plt
        if not self.points:
            plt.title("no team has both values")
            return
        xs, ys, _ = zip(*self.points, strict=True)
        plt.scatter(list(xs), list(ys), marker="braille")
        plt.xlabel(self.metric)
        plt.ylabel(self.improvement)
        plt.title(f"{len(self.points)} teams")
