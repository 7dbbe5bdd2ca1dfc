"""Where ensui keeps its state: a project-local folder, like `mlruns/` or `.aim/`.

Resolution order: the `--home` option, then `ENSUI_HOME`, then `./.ensui` in the
current directory. Everything ensui writes lives below this one folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIRNAME = ".ensui"


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.db"

    @property
    def runs(self) -> Path:
        """Checkpoints of training jobs, one folder per job key."""
        return self.root / "runs"

    @property
    def outputs(self) -> Path:
        """Cached member outputs per (member, validation set)."""
        return self.root / "outputs"

    @property
    def cache(self) -> Path:
        """Generated data: corrupted validation sets."""
        return self.root / "cache"


def resolve_home(option: str | os.PathLike | None = None) -> Home:
    raw = option or os.environ.get("ENSUI_HOME") or Path.cwd() / DEFAULT_DIRNAME
    return Home(Path(raw).expanduser().resolve())
