"""Writing an experiment's tables as CSV, JSON or Parquet files, one file per table."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ensui.engine.artifacts import write_bytes_atomic
from ensui.errors import EnsuiError

FORMATS = ("csv", "json", "parquet")


def export_tables(tables: dict[str, list[dict]], folder: Path, fmt: str) -> list[Path]:
    """One file per non-empty table; returns the paths written."""
    if fmt not in FORMATS:
        raise EnsuiError(f"unknown format '{fmt}'; choose from {', '.join(FORMATS)}")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in tables.items():
        if not rows:
            continue
        path = folder / f"{name}.{fmt}"
        write_bytes_atomic(path, _encode(rows, fmt))
        written.append(path)
    return written


def _encode(rows: list[dict], fmt: str) -> bytes:
    if fmt == "json":
        return json.dumps(rows, indent=1).encode()
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().encode()
    return _parquet(rows)


def _parquet(rows: list[dict]) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise EnsuiError("Parquet export needs pyarrow: pip install pyarrow") from None
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue().to_pybytes()
