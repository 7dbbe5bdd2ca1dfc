"""A screen not built yet: says so, and keeps the app's keys working."""

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header, Static


class Placeholder(Screen):
    def __init__(self, title: str):
        super().__init__()
        self.title_text = title

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"{self.title_text}: coming next", id="placeholder")
        yield Footer()
