"""The sub-network search's Pareto front on the results screen: a table of the points
(accuracy, MACs, parameters, Table ii's encoding) beside a scatter of accuracy against
MACs. The screen saves the point under the cursor as a catalog sub-network."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from ensui.render import table_ii_text
from ensui.screens.jobs import fill_table
from ensui.screens.widgets import VimTable

COLUMNS = ("#", "acc %", "MMACs", "params M", "Table ii (depth / width / expansion)")


def front_rows(points: list[dict]) -> list[tuple[str, tuple]]:
    """(key, cells) per front point; a point Table ii cannot write says so."""
    rows = []
    for p in points:
        config = table_ii_text(p["table_ii"]) or "— (not Table ii)"
        rows.append((str(p["idx"]), (str(p["idx"]), f"{100 * p['accuracy']:.1f}",
                                     f"{p['macs'] / 1e6:.1f}", f"{p['params'] / 1e6:.2f}",
                                     config)))
    return rows


class FrontPane(Horizontal):
    DEFAULT_CSS = """
    FrontPane #front { width: 1fr; height: 1fr; }
    FrontPane #front-plot { width: 1fr; height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield VimTable(id="front", cursor_type="row", zebra_stripes=True)
        yield PlotextPlot(id="front-plot")

    def on_mount(self) -> None:
        self.query_one("#front", DataTable).add_columns(*COLUMNS)

    def show(self, points: list[dict]) -> None:
        fill_table(self.query_one("#front", DataTable), front_rows(points))
        plot = self.query_one("#front-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        if points:
            plt.scatter([p["macs"] / 1e6 for p in points],
                        [100 * p["accuracy"] for p in points], marker="braille")
            plt.xlabel("MMACs")
            plt.ylabel("acc %")
        plt.title("Pareto front" if points else "no sub-network search in this experiment")
        plot.refresh()

    def selected(self) -> int | None:
        """The front index under the table's cursor."""
        table = self.query_one("#front", DataTable)
        if not table.row_count:
            return None
        return int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
