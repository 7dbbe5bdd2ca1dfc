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


def headless_json(tmp_path: Path, spec_text: str):
    """`ensui headless --json` on a spec in a fresh home, as a user runs it: (the finished
    process, the home). Fails the test unless it exits 0."""
    import subprocess

    spec, home = write(tmp_path, spec_text), tmp_path / "home"
    proc = subprocess.run([sys.executable, "-m", "ensui", "--home", str(home), "headless",
                           "--spec", str(spec), "--json"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc, home


MIXED = """\
name: mixed
dataset: {val_fraction: 0.8}  # 360 training digits: the mechanics, not the accuracy
training:
  epochs: 1
  batch_size: 64
  crop_scale: [0.5, 1.0]
  hflip: 0.0
  dino: {backbone_epochs: 1, probe_epochs: 1}
  supernet: {warmup_epochs: 1, total_epochs: 4, bn_samples: 64, num_evals: 6, population: 3}
validation: {sets: [clean, noise], severities: [2], limit: 120}
analysis:
  attribution: {samples: 16, n_steps: 4}
  activation: {samples: 64, batch_size: 32}
members: [MNASNET_1, SqueezeNet, dino_resnet1, dino_resnet2, B_0, nB_2]
joint:
  - {name: bal, models: [MNASNET_1, SqueezeNet], loss: balanced, lambdas: [0, 1]}
"""


@pytest.fixture(scope="session")
def mixed_run(tmp_path_factory):
    """One `ensui headless --json` run with a member of every recipe: supervised, DINO
    (two rows sharing a backbone), BootstrapNAS sub-networks, and a jointly trained pair
    at λ 0 and 1. Shared by the recipes' end-to-end tests: one run instead of three."""
    return headless_json(tmp_path_factory.mktemp("mixed"), MIXED)


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
