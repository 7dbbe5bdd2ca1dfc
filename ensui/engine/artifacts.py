"""Files that jobs leave behind, written so that a crash never leaves a usable-looking
half file: write to a temporary name in the same folder, fsync, rename. Each file has a
`.sha256` sidecar holding its size and digest; a file whose sidecar is missing or does
not match is treated as absent, so the job that makes it runs again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_checked(path: Path, payload: bytes) -> None:
    """Atomic write plus the sidecar; the sidecar goes last, so it vouches for a whole file."""
    _sidecar(path).unlink(missing_ok=True)
    write_bytes_atomic(path, payload)
    meta = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    write_bytes_atomic(_sidecar(path), json.dumps(meta).encode())


def is_intact(path: Path) -> bool:
    side = _sidecar(path)
    if not (path.is_file() and side.is_file()):
        return False
    try:
        meta = json.loads(side.read_text())
    except (ValueError, OSError):
        return False
    return path.stat().st_size == meta.get("size") and sha256_of(path) == meta.get("sha256")


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    _sidecar(path).unlink(missing_ok=True)


def save_state(obj: dict, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_checked(path, buffer.getvalue())


def load_state(path: Path) -> dict | None:
    """A checked torch file loaded with weights_only=True, or None if absent or damaged."""
    if not is_intact(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def save_array(array: np.ndarray, path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_checked(path, buffer.getvalue())


def load_array(path: Path) -> np.ndarray | None:
    if not is_intact(path):
        return None
    return np.load(path, allow_pickle=False)
