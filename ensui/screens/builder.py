"""The builder screen: from the members picked on the catalog screen to an experiment —
name, dataset, validation sets and severities, consensus, team sizes, scale, epochs — then
plan it (jobs to run vs cached), save it as YAML that `ensui headless --spec` replays,
launch it (queue its jobs, start detached workers), or copy the headless command.

The UI thread only reads the widgets into a `Form` of plain text. Building the Spec,
planning, writing and submitting run in thread workers (importing the engine alone
takes seconds) and report back with a `BuilderOutcome` message.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (Button, Checkbox, Footer, Header, Input, Label, RadioButton,
                             RadioSet, Static)

from ensui.engine.runtime.control import serving
from ensui.errors import EnsuiError
from ensui.home import resolve_home
from ensui.screens.data import catalog_of
from ensui.screens.widgets import int_list, positive_number, whole_number

# The engine's DEFAULT_SETS and CONSENSUS, spelled out so that showing this screen does
# not import the engine; a test keeps them equal.
SET_CHOICES = ("clean", "noise", "blur", "weather", "digital")
CONSENSUS_CHOICES = ("average", "vote", "logit_average", "max_confidence")
DEFAULT_SEVERITIES = [1, 2, 3, 4, 5]
DEFAULT_TEAM_SIZES = [2, 3]
IN_FLIGHT = ("queued", "running")


@dataclass
class Form:
    """What the builder's widgets hold, as typed."""

    name: str = "ensemble"
    dataset: str = ""
    sets: tuple[str, ...] = SET_CHOICES
    severities: str = "1,2,3,4,5"
    consensus: tuple[str, ...] = ("average",)
    team_sizes: str = "2,3"
    scale: str = "tiny"
    epochs: str = ""
    crop_scale: str = ""
    hflip: str = ""
    path: str = ""


class SpecFileTaken(Exception):
    """The spec file holds another spec; saving again replaces it."""

    def __init__(self, path: Path):
        super().__init__(f"{path} exists with other content: press ctrl+s again to replace "
                         "it, or change the spec file")
        self.path = path


class BuilderOutcome(Message):
    """What a worker did: `kind` is plan, saved, exists, launched or error."""

    def __init__(self, kind: str, text: str, path: Path | None = None, spec=None,
                 experiment: str | None = None, pids: tuple[int, ...] = ()):
        super().__init__()
        self.kind, self.text, self.path, self.spec = kind, text, path, spec
        self.experiment, self.pids = experiment, pids
        self.ends_launch = False  # set on the outcome of a launch: another may start


class BuilderScreen(Screen):
    AUTO_FOCUS = "#form"  # not a field: the app's keys (1-5, q, ?) work until one is entered
    BINDINGS = [
        Binding("escape", "leave_field", "Leave field", show=False),
        Binding("ctrl+s", "save", "Save spec"),
        Binding("ctrl+l", "launch", "Launch"),
        Binding("ctrl+o", "plan", "Plan"),
        Binding("y", "copy_command", "Copy command"),
    ]
    DEFAULT_CSS = """
    BuilderScreen #form { padding: 0 1; }
    BuilderScreen .row { height: auto; }
    BuilderScreen .row > .field-label { width: 16; color: $text-muted; }
    BuilderScreen .row > Input, BuilderScreen #members { width: 1fr; }
    BuilderScreen .row Checkbox, BuilderScreen .row RadioButton { width: auto; margin-right: 1; }
    BuilderScreen RadioSet { layout: horizontal; width: auto; }
    BuilderScreen #actions { height: auto; margin: 1 0; }
    BuilderScreen #actions Button { margin-right: 1; }
    BuilderScreen #status { height: auto; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.spec = None                 # the Spec last saved or launched
        self.busy = False                # a launch is under way
        self.overwrite: Path | None = None  # saving again here replaces the file
        self.started: list[int] = []     # pids of workers this screen started

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            yield from self._row("members", Static(id="members"))
            yield from self._row("name", Input(Form.name, id="name", compact=True))
            yield from self._row("dataset", Input(
                placeholder="embedded digits, or a folder with train/ and val/",
                id="dataset", compact=True))
            yield from self._row("validation sets", *[
                Checkbox(n, True, id=f"set-{n}", compact=True) for n in SET_CHOICES])
            yield from self._row("severities", Input(Form.severities, id="severities",
                                                     compact=True))
            yield from self._row("consensus", *[
                Checkbox(c, c in Form.consensus, id=f"consensus-{c}", compact=True)
                for c in CONSENSUS_CHOICES])
            yield from self._row("team sizes", Input(Form.team_sizes, id="team_sizes",
                                                     placeholder="2,3 or all", compact=True))
            yield from self._row("scale", RadioSet(
                RadioButton("tiny", True, id="scale-tiny"), RadioButton("paper", id="scale-paper"),
                compact=True))
            yield from self._row("epochs", Input(placeholder="each recipe's (Table i)",
                                                 id="epochs", compact=True))
            yield from self._row("crop scale", Input(
                placeholder="low,high of the random crop area; Table iii's 0.08,1",
                id="crop_scale", compact=True))
            yield from self._row("flip", Input(placeholder="flip probability; 0.5",
                                               id="hflip", compact=True))
            yield from self._row("spec file", Input(
                placeholder=str(default_path(Form.name)), id="path", compact=True))
            with Horizontal(id="actions"):
                yield Button("Plan", id="plan", action="screen.plan", compact=True)
                yield Button("Save spec", id="save", action="screen.save", compact=True)
                yield Button("Launch", id="launch", action="screen.launch", variant="primary",
                             compact=True, disabled=self.app.readonly)
                yield Button("Copy command", id="copy", action="screen.copy_command",
                             compact=True)
            yield Static(id="status")
        yield Footer()

    @staticmethod
    def _row(label: str, *widgets):
        with Horizontal(classes="row"):
            yield Label(label, classes="field-label")
            yield from widgets

    def on_mount(self) -> None:
        self.sub_title = "builder" + (" · read-only" if self.app.readonly else "")
        self._show_members()

    def on_screen_resume(self) -> None:
        self._show_members()

    def _show_members(self) -> None:
        picked = self.app.picked
        text = (f"{len(picked)}: " + " · ".join(picked) if picked else
                "none picked yet: press 1, move to a model and press space")
        self.query_one("#members", Static).update(text)

    @on(Input.Changed, "#name")
    def _name_changed(self, event: Input.Changed) -> None:
        self.query_one("#path", Input).placeholder = str(default_path(event.value))

    def read_form(self) -> Form:
        def text(widget_id: str) -> str:
            return self.query_one(f"#{widget_id}", Input).value

        def ticked(prefix: str, names) -> tuple[str, ...]:
            return tuple(n for n in names if self.query_one(f"#{prefix}-{n}", Checkbox).value)

        return Form(name=text("name"), dataset=text("dataset"), sets=ticked("set", SET_CHOICES),
                    severities=text("severities"),
                    consensus=ticked("consensus", CONSENSUS_CHOICES),
                    team_sizes=text("team_sizes"),
                    scale="paper" if self.query_one("#scale-paper", RadioButton).value else "tiny",
                    epochs=text("epochs"), crop_scale=text("crop_scale"), hflip=text("hflip"),
                    path=text("path"))

    # -- actions --------------------------------------------------------------

    def action_leave_field(self) -> None:
        self.query_one("#form").focus()

    def action_plan(self) -> None:
        self._status("planning…")
        self._plan(self.read_form(), list(self.app.picked))

    def action_save(self) -> None:
        form = self.read_form()
        self._status("saving…")
        self._save(form, list(self.app.picked), self.overwrite == spec_path(form))

    def action_launch(self) -> None:
        if self.app.readonly:
            self.notify("read-only: launching is off (ensui was started with --readonly)",
                        severity="warning")
            return
        if self.busy:
            return
        self.busy = True
        form = self.read_form()
        self._status("launching…")
        self._launch(form, list(self.app.picked), self.overwrite == spec_path(form))

    def action_copy_command(self) -> None:
        form = self.read_form()
        path = spec_path(form)
        command = headless_command(path, self.app.home)
        self.app.copy_to_clipboard(command)
        unsaved = "" if path.exists() else f" ({path} is not saved yet: ctrl+s)"
        self.notify(f"copied: {command}{unsaved}", markup=False)

    # -- workers ----------------------------------------------------------------

    @work(thread=True, group="builder")
    def _plan(self, form: Form, members: list[str]) -> None:
        try:
            text = plan_summary(build_spec(spec_data(form, members)), self.app.home)
            self.post_message(BuilderOutcome("plan", text))
        except (EnsuiError, ValueError, OSError) as exc:
            self.post_message(BuilderOutcome("error", str(exc)))

    @work(thread=True, group="builder")
    def _save(self, form: Form, members: list[str], overwrite: bool) -> None:
        try:
            path, spec, _ = save_spec(form, members, overwrite)
            outcome = BuilderOutcome("saved", f"saved {path}", path, spec)
        except SpecFileTaken as exc:
            outcome = BuilderOutcome("exists", str(exc), exc.path)
        except (EnsuiError, ValueError, OSError) as exc:
            outcome = BuilderOutcome("error", str(exc))
        self.post_message(outcome)

    @work(thread=True, group="builder")
    def _launch(self, form: Form, members: list[str], overwrite: bool) -> None:
        try:
            path, spec, text = save_spec(form, members, overwrite)
            outcome = launch(spec, path, text, self.app.home)
        except SpecFileTaken as exc:
            outcome = BuilderOutcome("exists", str(exc), exc.path)
        except (EnsuiError, ValueError, OSError) as exc:
            outcome = BuilderOutcome("error", str(exc))
        outcome.ends_launch = True
        self.post_message(outcome)

    @on(BuilderOutcome)
    def _outcome(self, outcome: BuilderOutcome) -> None:
        self.busy = self.busy and not outcome.ends_launch
        self.overwrite = outcome.path if outcome.kind == "exists" else None
        self.spec = outcome.spec or self.spec
        self._status(outcome.text, error=outcome.kind in ("error", "exists"))
        if outcome.kind == "launched":
            self.started += outcome.pids
            self.app.experiment = outcome.experiment
            self.notify(outcome.text, markup=False)
            self.app.switch_mode("jobs")
        elif outcome.kind in ("error", "exists"):
            self.notify(outcome.text, markup=False,
                        severity="error" if outcome.kind == "error" else "warning")

    def _status(self, text: str, error: bool = False) -> None:
        self.query_one("#status", Static).update(Text(text, style="bold red" if error else ""))


# -- from the form to a spec, a plan, a file, a launch ---------------------------------


def default_path(name: str) -> Path:
    """`./<name>.yaml`, the name made safe for a file name."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.") or "experiment"
    return Path(f"./{stem}.yaml")


def spec_path(form: Form) -> Path:
    return Path(form.path.strip()).expanduser() if form.path.strip() else default_path(form.name)


def spec_data(form: Form, members: list[str]) -> dict:
    """The spec as a mapping; ValueError naming the form's field. Team sizes are left out
    at their default, so that they still shrink to fit fewer members."""
    if not members:
        raise ValueError("members: pick at least one model on the catalog screen "
                         "(1, then space on a row)")
    if not form.name.strip():
        raise ValueError("name: give the experiment a name")
    if not form.sets:
        raise ValueError("validation sets: tick at least one")
    if not form.consensus:
        raise ValueError("consensus: tick at least one")
    validation = {"sets": list(form.sets),
                  "severities": int_list("severities", form.severities, 1, 5)}
    analysis: dict = {"consensus": list(form.consensus)}
    sizes = team_sizes(form.team_sizes)
    if sizes != DEFAULT_TEAM_SIZES:
        analysis["team_sizes"] = sizes
    data = {"name": form.name.strip(), "scale": form.scale, "dataset": dataset(form.dataset),
            "validation": validation, "analysis": analysis, "members": list(members)}
    training = training_data(form)
    if training:
        data["training"] = training
    return data


def training_data(form: Form) -> dict:
    """The training overrides typed (epochs, crop scale, flip); blank fields are left out."""
    training: dict = {}
    epochs = whole_number("epochs", form.epochs, 1)
    if epochs is not None:
        training["epochs"] = epochs
    if form.crop_scale.strip():
        training["crop_scale"] = crop_scale(form.crop_scale)
    hflip = positive_number("flip", form.hflip, allow_zero=True)
    if hflip is not None:
        if hflip > 1:
            raise ValueError(f"flip: a probability is at most 1 (got {form.hflip.strip()})")
        training["hflip"] = hflip
    return training


def crop_scale(text: str) -> list[float]:
    """`0.25, 1` -> [0.25, 1.0]: the random crop's area range, 0 < low <= high <= 1."""
    parts = [p for p in text.replace(",", " ").split() if p]
    values = [positive_number("crop scale", p) for p in parts]
    if len(values) != 2 or not values[0] <= values[1] <= 1:
        raise ValueError(f"crop scale: give low,high with 0 < low <= high <= 1 (got {text.strip()})")
    return values


def team_sizes(text: str) -> list[int] | str:
    if text.strip().lower() == "all":
        return "all"
    return sorted(int_list("team sizes", text, 2))


def dataset(text: str) -> dict:
    """The embedded digits when blank (or `embedded`), else a folder, made absolute so the
    spec means the same wherever it is saved."""
    text = text.strip()
    if text in ("", "embedded"):
        return {"kind": "embedded"}
    folder = Path(text).expanduser().resolve()
    if not folder.is_dir():
        raise ValueError(f"dataset: no folder at {folder}")
    return {"kind": "folder", "path": str(folder)}


def build_spec(data: dict):
    """A validated Spec; ValueError `field: problem` for the first problem."""
    from pydantic import ValidationError

    from ensui.engine.spec import Spec

    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "spec"
        raise ValueError(f"{field}: {error['msg'].removeprefix('Value error, ')}") from None


def save_spec(form: Form, members: list[str], overwrite: bool):
    """(path, spec as read back from the file, its text). SpecFileTaken when the file
    holds something else and `overwrite` is off."""
    from ensui.engine.spec import dump_spec, load_spec

    spec = build_spec(spec_data(form, members))
    text, path = dump_spec(spec), spec_path(form)
    if path.exists() and path.read_text() != text and not overwrite:
        raise SpecFileTaken(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    loaded = load_spec(path)
    if loaded != spec:
        raise ValueError(f"{path}: the saved spec reads back differently (a bug in ensui)")
    return path, loaded, text


def plan_summary(spec, home) -> str:
    """`N jobs: X to run, Y cached, Z already queued or running (train a · evaluate b …)`."""
    from ensui.engine.plan import make_plan
    from ensui.engine.runtime.submit import triage

    with catalog_of(home) as catalog:
        plan = make_plan(spec, catalog)
        redo, cached = triage(plan, catalog, home)
        states = [(catalog.job(j.key) or {}).get("status") for j in plan.jobs]
    new = sum(state is None for state in states)
    in_flight = sum(state in IN_FLIGHT for state in states)
    kinds = Counter(job.kind for job in plan.jobs)
    detail = " · ".join(f"{kind} {n}" for kind, n in kinds.items())
    return (f"{len(plan.jobs)} jobs: {new + len(redo)} to run, {len(cached)} cached, "
            f"{in_flight} already queued or running ({detail})")


def launch(spec, path: Path, text: str, home) -> BuilderOutcome:
    """Submit the spec and start detached workers unless live ones will take its jobs."""
    from ensui.engine.runtime import pool
    from ensui.engine.runtime.submit import submit

    with catalog_of(home) as catalog:
        submission = submit(spec, path, text, catalog, home)
        exp = submission.plan.experiment_id
        waiting = catalog.experiment_progress(exp).get("queued", 0)
        served = serving(catalog, exp)
    procs = pool.start(home, pool.lanes(), exit_when_idle=True) if waiting and not served else []
    workers = (f"started {len(procs)} worker(s)" if procs else
               "live workers will take them" if waiting else "nothing to run")
    return BuilderOutcome("launched", f"{spec.name}: {waiting} job(s) queued, "
                                      f"{len(submission.cached)} cached; {workers}",
                          path, spec, exp, tuple(p.pid for p in procs))


def headless_command(path: Path, home) -> str:
    """`ensui headless --spec PATH`, with `--home` when the app runs on another home."""
    where = "" if home == resolve_home() else f"--home {shlex.quote(str(home.root))} "
    return f"ensui {where}headless --spec {shlex.quote(str(path))}"
