"""Small pieces the screens share: a DataTable that also moves with hjkl, short text
renderings of catalog values, and parsing of the numbers people type into forms.

Nothing here reads the catalog or computes; parsing errors are ValueError with a message
that names the field, ready to show as is.
"""

from __future__ import annotations

import json

from rich.cells import cell_len
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from ensui.render import compact as compact_params  # `sgd lr=0.1 wd=0.0001 m=0.9`

__all__ = ["VimTable", "compact_params", "count_text", "cell", "fitted_widths",
           "whole_number", "positive_number", "int_list"]


class VimTable(DataTable):
    """A DataTable whose cursor also moves with h/j/k/l (arrows still work)."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("h", "cursor_left", "Left", show=False),
        Binding("l", "cursor_right", "Right", show=False),
    ]


def fitted_widths(labels: list[str], rows: list[tuple[str, ...]]) -> list[int]:
    """The width of each column that fits its label and every row's cell."""
    return [max([cell_len(label), *(cell_len(row[i]) for row in rows)])
            for i, label in enumerate(labels)]


def cell(value) -> str:
    """A catalog value in one table cell: `—` for nothing, JSON for nested values."""
    if value is None:
        return "—"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def count_text(n: int) -> str:
    """`14,593,448 (14.6 M)`: exact, and readable at a glance."""
    return f"{n:,} ({n / 1e6:.1f} M)" if n >= 100_000 else f"{n:,} ({n / 1e3:.1f} k)"


def whole_number(field: str, text: str, minimum: int | None = None) -> int | None:
    """The integer typed in `field`; None when left blank."""
    text = text.strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{field}: '{text}' is not a whole number") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{field}: must be at least {minimum} (got {value})")
    return value


def positive_number(field: str, text: str, allow_zero: bool = False) -> float | None:
    """The finite number > 0 (or >= 0) typed in `field`; None when left blank."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{field}: '{text}' is not a number") from None
    if not (value >= 0 if allow_zero else value > 0) or value == float("inf"):
        bound = "0 or more" if allow_zero else "greater than 0"
        raise ValueError(f"{field}: must be a number {bound} (got {text})")
    return value


def int_list(field: str, text: str, low: int, high: int | None = None) -> list[int]:
    """`1, 3,5` -> [1, 3, 5], each within [low, high]; at least one, none twice."""
    parts = [p for p in text.replace(",", " ").split() if p]
    if not parts:
        raise ValueError(f"{field}: give at least one number, e.g. '{low}'")
    values = [whole_number(field, p, low) for p in parts]
    if high is not None and max(values) > high:
        raise ValueError(f"{field}: must be between {low} and {high} (got {max(values)})")
    if len(set(values)) != len(values):
        raise ValueError(f"{field}: a number is listed twice")
    return values


class Read(Message):
    """What a screen's thread worker read, posted back to the screen as plain data."""

    def __init__(self, data: dict):
        super().__init__()
        self.data = data
