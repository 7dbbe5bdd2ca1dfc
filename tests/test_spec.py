import json
import subprocess
import sys

from conftest import QUICKSTART

from ensui.engine.spec import dump_spec, load_spec


def test_quickstart_covers_every_supervised_family():
    from ensui.catalog import Catalog

    spec = load_spec(QUICKSTART)
    catalog = Catalog.memory()
    families = {catalog.model(m.model)["family"] for m in spec.members}
    assert len(spec.members) >= 6
    assert families == {"resnext", "mnasnet", "squeezenet", "deit"}
    assert spec.scale == "tiny" and spec.dataset.kind == "embedded"
    assert spec.validation.sets == ["clean", "noise", "blur", "weather", "digital"]


def test_round_trip(tmp_path):
    spec = load_spec(QUICKSTART)
    again = tmp_path / "again.yaml"
    again.write_text(dump_spec(spec))
    assert load_spec(again) == spec


def test_schema_and_check_commands(cli):
    code, out, _ = cli("spec", "schema")
    schema = json.loads(out)
    assert code == 0 and "members" in schema["properties"] and "TrainingSpec" in schema["$defs"]
    code, _, err = cli("spec", "check", QUICKSTART)
    assert code == 0 and "ok" in err and "97 jobs" in err  # 6 trainings, 30 evaluations, 30 + 30 analysis, the study
    code, _, err = cli("spec", "check", QUICKSTART.parent / "ncl.yaml")
    assert code == 0 and "3 members and 14 jointly trained" in " ".join(err.split())


def test_engine_never_imports_textual():
    code = ("import sys; import ensui.engine.runtime.worker, ensui.engine.plan, ensui.headless, ensui.cli; "
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
