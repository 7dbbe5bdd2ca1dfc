"""The help overlay (`?`): the keys of the app, of the screen it was opened on (read from
that screen's bindings, so it stays true as screens change), and the conventions every
table and form follows. `esc` or `?` closes it."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

MOVING = (("↑ ↓ ← → / h j k l", "move in tables"), ("tab / shift+tab", "next / previous field"),
          ("enter", "open, confirm"), ("esc", "close, back"),
          ("ctrl+p", "command palette"), ("ctrl+t", "light / dark theme"))
NAMES = {"question_mark": "?", "slash": "/", "space": "space", "escape": "esc"}


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "close", "Close"),
                Binding("question_mark", "close", "Close", show=False)]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen #help { width: 72; max-width: 100%; height: auto; max-height: 100%;
                       border: thick $primary; background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help") as box:
            box.border_title = "keys · esc closes"
            yield Static(id="keys")

    def on_mount(self) -> None:
        stack = self.app.screen_stack
        below = stack[-2] if len(stack) > 1 else None
        sections = [("everywhere", binding_rows(type(self.app).BINDINGS))]
        if below is not None and below.BINDINGS:
            sections.append((screen_name(below), binding_rows(type(below).BINDINGS)))
        sections.append(("tables and forms", list(MOVING)))
        self.query_one("#keys", Static).update(keys_table(sections))

    def action_close(self) -> None:
        self.dismiss()


def binding_rows(bindings) -> list[tuple[str, str]]:
    """(key, what it does) for each binding with a description."""
    return [(b.key_display or key_name(b.key), b.description)
            for b in Binding.make_bindings(bindings) if b.description]


def key_name(keys: str) -> str:
    return " / ".join(NAMES.get(k, k) for k in keys.split(","))


def screen_name(screen: Screen) -> str:
    name = type(screen).__name__.removesuffix("Screen")
    return f"this screen ({name.lower() or 'screen'})"


def keys_table(sections: list[tuple[str, list[tuple[str, str]]]]) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("what")
    for index, (title, rows) in enumerate(sections):
        if index:
            table.add_row("", "")
        table.add_row(f"[reverse] {title} [/]", "")
        for key, what in rows:
            table.add_row(key, what)
    return table
