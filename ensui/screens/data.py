"""What the screens read, as plain data, each call on its own catalog connection so it
can run in a thread worker. Nothing here touches widgets."""

from __future__ import annotations

from contextlib import contextmanager

from ensui.catalog import Catalog
from ensui.home import Home


@contextmanager
def catalog_of(home: Home, readonly: bool = False):
    """A fresh connection for one thread's reads (SQLite connections stay in their thread)."""
    catalog = Catalog(home.catalog)
    try:
        yield catalog
    finally:
        catalog.close()


def queue_snapshot(home: Home) -> dict:
    from ensui.engine.runtime.control import snapshot

    with catalog_of(home) as catalog:
        return {**snapshot(catalog), "page": catalog.jobs_page(limit=200)}
