"""Views that persist between sessions: each screen's table choices (filter, sort,
pinned baseline, columns shown, tab, heatmap metric), kept in `views.json` in the ensui
home, so tomorrow's session opens the way today's was left.

Views are a convenience: a missing, damaged or unwritable file gives the defaults and
never an error. A `--readonly` session keeps its changes for itself. Writes go to a
temporary name and are renamed, so a crash mid-write leaves the previous file.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

FILE = "views.json"
_lock = threading.RLock()  # one app writes from several thread workers


def views_path(home) -> Path:
    return home.root / FILE


def load_view(home, screen: str) -> dict:
    """The saved view of `screen` ({} when none or unreadable). A few hundred bytes."""
    try:
        saved = json.loads(views_path(home).read_text())
    except (OSError, ValueError):
        return {}
    view = saved.get(screen) if isinstance(saved, dict) else None
    return view if isinstance(view, dict) else {}


def save_view(home, screen: str, view: dict) -> None:
    """Replace `screen`'s saved view, keeping the other screens'."""
    path = views_path(home)
    with _lock:
        try:
            saved = json.loads(path.read_text())
            saved = saved if isinstance(saved, dict) else {}
        except (OSError, ValueError):
            saved = {}
        saved[screen] = view
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(saved, indent=1, sort_keys=True))
            tmp.replace(path)
        except OSError:
            pass  # a read-only home keeps today's view for this session only


_pending: dict[tuple, dict] = {}  # (home, screen) -> the newest view not yet written


def remember(screen, name: str, view: dict) -> None:
    """Save a screen's view in a thread; a read-only session writes nothing.

    Threads may run out of order, so each writes the newest view pending, not its own.
    """
    if screen.app.readonly:
        return
    home = screen.app.home
    _pending[(home.root, name)] = view
    screen.run_worker(lambda: _write_pending(home, name), thread=True, group="views",
                      exit_on_error=False)


def _write_pending(home, name: str) -> None:
    with _lock:
        view = _pending.pop((home.root, name), None)
        if view is not None:
            save_view(home, name, view)


def typed(view: dict, key: str, kind: type, default):
    """`view[key]` when it has the expected type (a hand-edited file may not)."""
    value = view.get(key, default)
    return value if isinstance(value, kind) else default
