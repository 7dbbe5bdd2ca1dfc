import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "data" / "specs" / "quickstart.yaml"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No test touches the user's home or the working tree's .ensui."""
    home = tmp_path / "ensui-home"
    monkeypatch.setenv("ENSUI_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def home(_isolated_home):
    return _isolated_home


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `ensui ARGS` in-process; returns (exit code, stdout, stderr)."""
    from ensui.cli import main

    def run(*args: str):
        monkeypatch.setattr(sys, "argv", ["ensui", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
