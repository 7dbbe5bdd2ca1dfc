"""The Textual app: one mode per screen (catalog, builder, jobs, results, history), the
keys every screen shares, and the theme. Screens read the catalog in thread workers and
post messages; jobs run in worker processes (`ensui.engine.runtime`), never here.
"""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding

from ensui.home import Home


def _screen(name: str):
    """The screen class of a mode, imported when first shown (keeps start-up quick)."""
    def make():
        from importlib import import_module
        from importlib.util import find_spec

        module, cls = SCREENS[name]
        if find_spec(f"ensui.screens.{module}") is None:
            from ensui.screens.placeholder import Placeholder

            return Placeholder(name)
        return getattr(import_module(f"ensui.screens.{module}"), cls)()
    return make


SCREENS = {"catalog": ("catalog", "CatalogScreen"), "builder": ("builder", "BuilderScreen"),
           "jobs": ("jobs", "JobsScreen"), "results": ("results", "ResultsScreen"),
           "history": ("history", "HistoryScreen")}


PREPARE_AFTER_S, PREPARE_EVERY_S = 0.3, 0.15


class EnsuiApp(App):
    TITLE = "ensui"
    MODES = {name: _screen(name) for name in SCREENS}
    DEFAULT_MODE = "catalog"
    BINDINGS = [
        Binding("1", "switch_mode('catalog')", "Catalog"),
        Binding("2", "switch_mode('builder')", "Build"),
        Binding("3", "switch_mode('jobs')", "Jobs"),
        Binding("4", "switch_mode('results')", "Results"),
        Binding("5", "switch_mode('history')", "History"),
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
    ]

    def __init__(self, home: Home, readonly: bool = False):
        super().__init__()
        self.home, self.readonly = home, readonly
        self.picked: list[str] = []        # member model ids picked on the catalog screen
        self.experiment: str | None = None  # the experiment the results screen shows

    def on_mount(self) -> None:
        self._unbuilt = [name for name in SCREENS if name != self.DEFAULT_MODE]
        self.set_timer(PREPARE_AFTER_S, self._prepare_next_mode)

    def _prepare_next_mode(self) -> None:
        """Build one more mode's screen in the background, one per tick after the first
        paint, so the first switch to it is a swap (~40 ms), not a build (100-250 ms).
        Uses Textual's private `_init_mode`; without it, screens build when first shown."""
        init_mode = getattr(self, "_init_mode", None)
        if not self.is_running or self._exit:  # shutting down: a new stack would race it
            return
        while self._unbuilt and init_mode is not None:
            mode = self._unbuilt.pop(0)
            if mode not in self._screen_stacks:
                init_mode(mode)
                self.set_timer(PREPARE_EVERY_S, self._prepare_next_mode)
                return

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_help(self) -> None:
        from ensui.screens.help import HelpScreen

        self.push_screen(HelpScreen())

    def show_results(self, experiment: str) -> None:
        """Open the results screen on an experiment (from history, builder or jobs)."""
        self.experiment = experiment
        self.switch_mode("results")
