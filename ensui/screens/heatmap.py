"""A keyboard-driven heatmap widget: rows × columns of numbers (None where there is no
value), coloured on a diverging scale centred on 0 or on a sequential one, each value
printed in its cell, a legend line, and a cursor (arrows or hjkl) whose `enter` posts
`Heatmap.Selected`. When the grid is larger than the widget, a window that follows the
cursor is shown."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.color import Color
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

NEGATIVE, NEUTRAL, POSITIVE = Color.parse("#2166ac"), Color.parse("#f7f7f7"), Color.parse("#b2182b")
LOW, HIGH = Color.parse("#f7fbff"), Color.parse("#08306b")
LABEL_MAX = 18
HEADER_MAX = 11  # a cell widens to show a column name up to this long
CHROME_LINES = 4  # title, column header, status, legend


def scale_colour(value: float, scale: str, low: float, high: float) -> Color:
    """The background of a value: diverging runs blue (−) through white (0) to red (+)
    over ±max(|low|, |high|); sequential runs light to dark blue from low to high."""
    if scale == "diverging":
        limit = max(abs(low), abs(high)) or 1.0
        share = max(-1.0, min(1.0, value / limit))
        return NEUTRAL.blend(POSITIVE if share > 0 else NEGATIVE, abs(share))
    share = 0.0 if high == low else (value - low) / (high - low)
    return LOW.blend(HIGH, max(0.0, min(1.0, share)))


def window(count: int, cursor: int, fit: int, start: int) -> int:
    """The first visible index of `count` items showing `fit` of them with `cursor` in view."""
    fit = max(1, fit)
    start = min(start, cursor, max(0, count - fit))
    return max(0, cursor - fit + 1) if cursor >= start + fit else start


def _cut(label: str, width: int) -> str:
    return label if len(label) <= width else label[: max(1, width - 1)] + "…"


class Heatmap(Widget, can_focus=True):
    """Set the grid with `set_data`; `cursor` is (row, col); `openable=False` for a grid
    whose cells open nothing."""

    DEFAULT_CSS = """
    Heatmap { height: 1fr; width: 1fr; }
    Heatmap:focus { background: $boost; }
    """
    BINDINGS = [
        Binding("up,k", "move(-1, 0)", "Up", show=False),
        Binding("down,j", "move(1, 0)", "Down", show=False),
        Binding("left,h", "move(0, -1)", "Left", show=False),
        Binding("right,l", "move(0, 1)", "Right", show=False),
        Binding("enter", "select", "Open cell"),
    ]
    cursor: reactive[tuple[int, int]] = reactive((0, 0))

    class Selected(Message):
        """`enter` on a cell."""

        def __init__(self, heatmap: Heatmap, row: int, col: int):
            super().__init__()
            self.heatmap, self.row, self.col = heatmap, row, col

        @property
        def control(self) -> Heatmap:
            return self.heatmap

    def __init__(self, *, openable: bool = True, id: str | None = None,
                 classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.openable = openable  # False: `enter` does nothing and is not offered
        self.rows: list[str] = []
        self.cols: list[str] = []
        self.values: list[list[float | None]] = []
        self.scale, self.title, self.fmt = "diverging", "", "{:+.2f}"
        self.limits: tuple[float, float] | None = None
        self._start = [0, 0]

    def set_data(self, rows: list[str], cols: list[str], values: list[list[float | None]],
                 scale: str = "diverging", title: str = "", fmt: str = "{:+.2f}",
                 limits: tuple[float, float] | None = None) -> None:
        """Show a new grid; `limits` fixes the colour range (default: the values' range)."""
        self.rows, self.cols, self.values = list(rows), list(cols), values
        self.scale, self.title, self.fmt, self.limits = scale, title, fmt, limits
        row, col = self.cursor
        self.cursor = (min(row, max(0, len(rows) - 1)), min(col, max(0, len(cols) - 1)))
        self.refresh(layout=True)

    def value(self, row: int, col: int) -> float | None:
        try:
            return self.values[row][col]
        except IndexError:
            return None

    def action_move(self, rows: int, cols: int) -> None:
        if not self.rows or not self.cols:
            return
        row, col = self.cursor
        self.cursor = (max(0, min(len(self.rows) - 1, row + rows)),
                       max(0, min(len(self.cols) - 1, col + cols)))

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        return self.openable or action != "select"

    def action_select(self) -> None:
        if self.rows and self.cols:
            self.post_message(self.Selected(self, *self.cursor))

    def _range(self) -> tuple[float, float]:
        if self.limits:
            return self.limits
        present = [v for line in self.values for v in line if v is not None]
        return (min(present), max(present)) if present else (0.0, 1.0)

    def _text(self, value: float | None) -> str:
        return "—" if value is None else self.fmt.format(value)

    def _cell_layout(self) -> tuple[int, bool]:
        """Cell width, and whether columns go by number (the status line names them):
        cells widen up to HEADER_MAX to fit the column names, else they are numbered."""
        texts = [self._text(v) for line in self.values for v in line] or ["—"]
        width = max(max(map(len, texts)) + 2, 6)
        longest = max(map(len, self.cols)) + 1
        return (max(width, longest), False) if longest <= HEADER_MAX else (width, True)

    def _row_label(self, r: int, numbered: bool) -> str:
        same = numbered and self.rows == self.cols  # a square matrix: number the rows too
        return f"{r + 1} {self.rows[r]}" if same else self.rows[r]

    def render(self) -> Text:
        if not self.rows or not self.cols:
            return Text(f"{self.title}\n(no values yet)", style="dim")
        cell_w, numbered = self._cell_layout()
        labels = [self._row_label(r, numbered) for r in range(len(self.rows))]
        label_w = min(LABEL_MAX, max(map(len, labels)))
        width, height = self.size.width or 200, self.size.height or 200
        fit_cols = (width - label_w - 1) // cell_w
        fit_rows = height - CHROME_LINES
        row, col = self.cursor
        self._start = [window(len(self.rows), row, fit_rows, self._start[0]),
                       window(len(self.cols), col, fit_cols, self._start[1])]
        rows = range(self._start[0], min(len(self.rows), self._start[0] + max(1, fit_rows)))
        cols = range(self._start[1], min(len(self.cols), self._start[1] + max(1, fit_cols)))
        text = Text(self.title + "\n", style="bold")
        text.append(self._header(label_w, cell_w, cols, numbered))
        for r in rows:
            text.append(self._line(r, label_w, cell_w, cols, numbered))
        text.append(self._status(rows, cols))
        text.append(self._legend())
        return text

    def _header(self, label_w: int, cell_w: int, cols: range, numbered: bool) -> Text:
        line = Text(" " * (label_w + 1))
        for c in cols:
            style = "bold underline" if c == self.cursor[1] else "bold"
            name = str(c + 1) if numbered else self.cols[c]
            line.append(name.center(cell_w), style=style)
        return line + "\n"

    def _line(self, r: int, label_w: int, cell_w: int, cols: range, numbered: bool) -> Text:
        style = "bold underline" if r == self.cursor[0] else ""
        line = Text(_cut(self._row_label(r, numbered), label_w).ljust(label_w) + " ", style=style)
        low, high = self._range()
        for c in cols:
            value = self.value(r, c)
            body = self._text(value)
            body = f"[{body}]" if (r, c) == self.cursor else body
            if value is None:
                missing = "dim reverse" if (r, c) == self.cursor else "dim"
                line.append(body.center(cell_w), style=missing)
                continue
            bg = scale_colour(value, self.scale, low, high)
            cell = Style(bgcolor=bg.rich_color, color=bg.get_contrast_text(1.0).rich_color,
                         bold=(r, c) == self.cursor)
            line.append(body.center(cell_w), style=cell)
        return line + "\n"

    def _status(self, rows: range, cols: range) -> Text:
        row, col = self.cursor
        where = f"{self.rows[row]} × {self.cols[col]} = {self._text(self.value(row, col))}"
        if len(rows) < len(self.rows) or len(cols) < len(self.cols):
            where += (f"   rows {rows.start + 1}–{rows.stop}/{len(self.rows)} · "
                      f"cols {cols.start + 1}–{cols.stop}/{len(self.cols)}")
        return Text(where + "\n", style="italic")

    def _legend(self) -> Text:
        low, high = self._range()
        if self.scale == "diverging":
            limit = max(abs(low), abs(high)) or 1.0
            stops, ends = [-limit + i * limit / 4 for i in range(9)], (-limit, limit)
        else:
            stops, ends = [low + i * (high - low) / 8 for i in range(9)], (low, high)
        legend = Text("scale ")
        legend.append(self.fmt.format(ends[0]) + " ")
        for stop in stops:
            colour = scale_colour(stop, self.scale, low, high)
            legend.append("  ", style=Style(bgcolor=colour.rich_color))
        legend.append(" " + self.fmt.format(ends[1]))
        legend.append("   — no value   [x] cursor", style="dim")
        return legend
