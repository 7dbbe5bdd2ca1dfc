"""A job: one unit of work with a content key, the hash of everything that decides its
output, so the same work asked twice is one job."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


def content_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:20]


def file_identity(path) -> str | None:
    """`name:sha256` of a file a job starts from, so its key changes with the file's
    content; None for no file."""
    if path is None:
        return None
    from ensui.engine.artifacts import sha256_of  # torch-free callers stay torch-free

    return f"{path.name}:{sha256_of(path)}"


@dataclass(frozen=True)
class Job:
    key: str
    kind: str  # "pretrain" | "train" | "evaluate" | "activations" | "attribute" | "study"
    member: str
    model_id: str
    params: dict = field(hash=False)
    depends: str | None = None
