"""The catalog screen: Table i (models) and Table ii (subnetworks) of the paper, a detail
pane for the highlighted row (architecture, recipe, parameter count at tiny or paper
scale, reported top-1), a `/` filter, picking ensemble members for the builder, and a
form to duplicate a model with other hyperparameters.

Catalog reads and parameter counts (which build the model) run in thread workers and
come back as messages; the UI thread only fills tables and text.
"""

from __future__ import annotations

import re
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import DescendantFocus
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static
from textual.worker import get_current_worker

from ensui.errors import EnsuiError
from ensui.screens.data import catalog_of
from ensui.screens.views import load_view, remember, typed
from ensui.screens.widgets import (VimTable, cell, compact_params, count_text,
                                   fitted_widths, positive_number, whole_number)

# A count is made for this many classes at this image size (tiny: the embedded digits).
SCALES = {"tiny": (10, 32), "paper": (1000, 224)}
COUNT_SETTLE_S = 0.15  # a cursor moving fast starts no model builds on the rows it passes
MODEL_COLUMNS = (("pick", "✓"), ("id", "id"), ("family", "family"), ("recipe", "recipe"),
                 ("epochs", "epochs"), ("batch", "batch"), ("top1", "top-1"))
SUBNET_COLUMNS = (("pick", "✓"), ("id", "id"), ("top1", "top-1"), ("depth", "depth"),
                  ("width", "width"), ("expansion", "expansion"))
FILTER_FIELDS = {"model": ("id", "family", "recipe"), "subnet": ("id", "note")}
PICK_MARK = "✓"


class CatalogRead(Message):
    """The rows of Table i and Table ii, read in a worker."""

    def __init__(self, models: list[dict], subnets: list[dict]):
        super().__init__()
        self.models, self.subnets = models, subnets


class ParamsCounted(Message):
    """A parameter count (or why the model could not be built); None: the worker was
    superseded before it built anything."""

    def __init__(self, key: tuple[str, str, str], value: int | str | None):
        super().__init__()
        self.key, self.value = key, value


class VariantSaved(Message):
    def __init__(self, new_id: str):
        super().__init__()
        self.new_id = new_id


class CatalogScreen(Screen):
    AUTO_FOCUS = "#models"
    BINDINGS = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "close_filter", "Close filter", show=False),
        Binding("space", "pick", "Pick"),
        Binding("s", "scale", "Scale"),
        Binding("d", "duplicate", "Duplicate"),
    ]
    DEFAULT_CSS = """
    CatalogScreen #filter { display: none; }
    CatalogScreen #filter.-shown { display: block; }
    CatalogScreen VimTable { border-top: solid $primary-darken-1; }
    CatalogScreen #models { height: 5fr; }
    CatalogScreen #subnets { height: 4fr; }
    CatalogScreen VimTable:focus { border-top: solid $accent; }
    CatalogScreen #detail-box { height: 7; border-top: solid $primary-darken-1; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.models: list[dict] = []
        self.subnets: list[dict] = []
        self.scale = "tiny"
        self.text_filter = ""
        self.active = "models"       # the table whose highlighted row the pane shows
        self.counts: dict[tuple[str, str, str], int | str] = {}  # (kind, id, scale) -> count
        self.counting: tuple[str, str, str] | None = None
        self.reveal: str | None = None  # a model row to put the cursor on once read

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter by id, family or recipe (enter: keep, esc: clear)",
                    id="filter", compact=True)
        yield VimTable(id="models", cursor_type="row")
        yield VimTable(id="subnets", cursor_type="row")
        with VerticalScroll(id="detail-box"):
            yield Static("reading the catalog…", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#models").border_title = "Table i · models"
        self.query_one("#subnets").border_title = "Table ii · subnetworks"
        self.query_one("#detail-box").border_title = "detail"
        self._restore_view()
        self._title()
        self.load()

    def _restore_view(self) -> None:
        view = load_view(self.app.home, "catalog")
        self.scale = "paper" if view.get("scale") == "paper" else "tiny"
        self.text_filter = typed(view, "filter", str, "").strip()
        if self.text_filter:
            box = self.query_one("#filter", Input)
            box.value = self.text_filter
            box.add_class("-shown")

    def _remember(self) -> None:
        remember(self, "catalog", {"scale": self.scale, "filter": self.text_filter})

    def on_screen_resume(self) -> None:
        self._mark_picks()  # the builder may have changed the picks

    # -- reading ----------------------------------------------------------------

    @work(thread=True, exclusive=True, group="catalog-read")
    def load(self) -> None:
        with catalog_of(self.app.home) as catalog:
            models, subnets = catalog.models(), catalog.subnets()
        self.post_message(CatalogRead(models, subnets))

    @on(CatalogRead)
    def _read(self, message: CatalogRead) -> None:
        self.models, self.subnets = message.models, message.subnets
        self._fill()
        models = self.query_one("#models", DataTable)
        if self.reveal in models.rows:
            models.move_cursor(row=models.get_row_index(self.reveal))
        self.reveal = None

    def _fill(self) -> None:
        picked = set(self.app.picked)
        self._fill_table("#models", MODEL_COLUMNS, self.models, "model",
                         lambda r: model_cells(r, r["id"] in picked))
        self._fill_table("#subnets", SUBNET_COLUMNS, self.subnets, "subnet",
                         lambda r: subnet_cells(r, r["id"] in picked))
        self._show_current()

    def _fill_table(self, selector: str, columns, every: list[dict], kind: str, cells) -> None:
        """The rows of `every` that match the filter. Columns get fixed widths that fit all
        rows: they do not jump while filtering, and a table that has not measured its
        cells yet never draws them cut."""
        table = self.query_one(selector, DataTable)
        table.clear(columns=True)
        widths = fitted_widths([label for _, label in columns], [cells(r) for r in every])
        for (key, label), width in zip(columns, widths, strict=True):
            table.add_column(label, key=key, width=width)
        rows = _matching(every, kind, self.text_filter)
        for row in rows:
            table.add_row(*cells(row), key=row["id"])
        count = f"{len(rows)}" if not self.text_filter else f"{len(rows)} matching"
        table.border_title = f"{table.border_title.split(' (')[0]} ({count})"

    # -- the highlighted row ------------------------------------------------------

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == self.active:
            self._show_current()

    @on(DescendantFocus)
    def _focused(self, event: DescendantFocus) -> None:
        if isinstance(event.widget, DataTable) and event.widget.id != self.active:
            self.active = event.widget.id
            self._show_current()

    def current(self) -> tuple[str, dict] | None:
        """(kind, row) under the cursor of the active table, if any."""
        table = self.query_one(f"#{self.active}", DataTable)
        if table.row_count == 0:
            return None
        row_id = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        kind, rows = ("model", self.models) if self.active == "models" else ("subnet", self.subnets)
        return kind, next(r for r in rows if r["id"] == row_id)

    def _show_current(self) -> None:
        detail = self.query_one("#detail", Static)
        found = self.current()
        if found is None:
            detail.update(f"nothing in this table matches '{self.text_filter}'"
                          if self.text_filter else "")
            return
        kind, row = found
        key = (kind, row["id"], self.scale)
        if key not in self.counts and key != self.counting:
            self.counting = key
            self._count(key, architecture_of(kind, row))
        picked = row["id"] in self.app.picked
        detail.update(detail_text(kind, row, self.scale, self.counts.get(key), picked))

    @work(thread=True, exclusive=True, group="count")
    def _count(self, key: tuple[str, str, str], arch: dict) -> None:
        time.sleep(COUNT_SETTLE_S)
        if get_current_worker().is_cancelled:
            self.post_message(ParamsCounted(key, None))
            return
        from ensui.engine.models.factory import build_model, count_parameters

        classes, size = SCALES[key[2]]
        try:
            value: int | str = count_parameters(build_model(arch, key[2], classes, size))
        except Exception as exc:  # a model that cannot be built is shown, not a crash
            value = f"cannot build it: {exc}"
        self.post_message(ParamsCounted(key, value))

    @on(ParamsCounted)
    def _counted(self, message: ParamsCounted) -> None:
        if message.value is not None:
            self.counts[message.key] = message.value
        if self.counting == message.key:
            self.counting = None
        self._show_current()

    # -- actions --------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.focus()

    def action_close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.has_class("-shown"):
            return
        box.remove_class("-shown")
        box.value = ""  # fires Input.Changed, which refills the tables
        self.query_one(f"#{self.active}").focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self.text_filter != event.value.strip():
            self.text_filter = event.value.strip()
            self._remember()
        self._fill()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self) -> None:
        self.query_one(f"#{self.active}").focus()

    def action_pick(self) -> None:
        found = self.current()
        if found is None:
            return
        _, row = found  # a model, or a sub-network cut from the shared super-network
        if row["id"] in self.app.picked:
            self.app.picked.remove(row["id"])
        else:
            self.app.picked.append(row["id"])
        self._mark_picks()
        self._show_current()

    def _mark_picks(self) -> None:
        for name, rows in (("#models", self.models), ("#subnets", self.subnets)):
            table = self.query_one(name, DataTable)
            for row in rows:
                if row["id"] in table.rows:
                    mark = PICK_MARK if row["id"] in self.app.picked else ""
                    table.update_cell(row["id"], "pick", mark)
        self._title()

    def action_scale(self) -> None:
        self.scale = "paper" if self.scale == "tiny" else "tiny"
        self._remember()
        self._title()
        self._show_current()

    def _title(self) -> None:
        self.sub_title = f"catalog · {len(self.app.picked)} picked · scale {self.scale}"

    def action_duplicate(self) -> None:
        found = self.current()
        if self.app.readonly:
            self.notify("read-only: duplicating a model writes the catalog", severity="warning")
        elif found is None or found[0] != "model":
            self.notify("duplicate works on a Table i model row", severity="warning")
        else:
            taken = {r["id"] for r in self.models} | {r["id"] for r in self.subnets}
            self.app.push_screen(VariantForm(found[1], taken), self._variant_chosen)

    def _variant_chosen(self, request: dict | None) -> None:
        if request:
            self._add_variant(request)

    @work(thread=True, group="catalog-write")
    def _add_variant(self, request: dict) -> None:
        with catalog_of(self.app.home) as catalog:
            try:
                catalog.add_model_variant(request["base_id"], request["new_id"],
                                          request["overrides"])
            except (EnsuiError, ValueError) as exc:
                self.app.call_from_thread(self.notify, str(exc), severity="error", markup=False)
                return
        self.post_message(VariantSaved(request["new_id"]))

    @on(VariantSaved)
    def _variant_saved(self, message: VariantSaved) -> None:
        self.notify(f"saved {message.new_id} in the catalog", markup=False)
        self.reveal = message.new_id
        self.load()


def _matching(rows: list[dict], kind: str, text: str) -> list[dict]:
    """Rows whose id, family or recipe (subnets: id or note) contain `text`, any case."""
    needle = text.lower()
    return [r for r in rows
            if any(needle in str(r.get(f) or "").lower() for f in FILTER_FIELDS[kind])]


def epochs_text(epochs) -> str:
    """`100`, or `300+100` for a backbone + classifier schedule."""
    if isinstance(epochs, dict):
        return "+".join(str(v) for v in epochs.values())
    return cell(epochs)


def model_cells(row: dict, picked: bool) -> tuple:
    return (PICK_MARK if picked else "", row["id"], row["family"], row["recipe"],
            epochs_text(row["epochs"]), cell(row["batch_size"]), cell(row["reported_top1"]))


def subnet_cells(row: dict, picked: bool) -> tuple:
    return (PICK_MARK if picked else "", row["id"], cell(row["reported_top1"]),
            cell(row["depth"]), cell(row["width"]), cell(row["expansion"]))


def architecture_of(kind: str, row: dict) -> dict:
    """What `build_model` takes for a row (a subnetwork: its family with its config)."""
    if kind == "model":
        return row["arch"]
    config = {k: row[k] for k in ("depth", "expansion", "width")}
    return {"family": "resnet50_subnet", "subnet": row["id"], "config": config}


def detail_text(kind: str, row: dict, scale: str, count: int | str | None,
                picked: bool) -> Text:
    """The detail pane of one row: a head line, then `label  value` lines."""
    if kind == "model":
        what = f"{row['family']} · {row['recipe']} recipe · " + (
            "Table i" if row["source"] == "paper" else row["source"])
        arch = {k: v for k, v in row["arch"].items() if k != "family"}
        fields = [("architecture", compact_params(arch) or "—"),
                  ("optimizer", compact_params(row["optimizer"])),
                  ("schedule", schedule_text(row))]
    else:
        what = "BootstrapNAS ResNet50 subnetwork · Table ii"
        fields = [("architecture", (f"depth={cell(row['depth'])} width={cell(row['width'])} "
                                    f"expansion={cell(row['expansion'])}"))]
    fields += [("parameters", params_text(kind, row, scale, count)),
               ("paper top-1", "— (not in the paper)" if row["reported_top1"] is None
                else f"{row['reported_top1']} % (reported)")]
    text = Text.assemble((row["id"], "bold"), f"  {PICK_MARK} picked" if picked else "",
                         f"  {what}")
    for label, value in fields:
        text.append(f"\n{label:<13}", style="bold")
        text.append(value)
    return text


def schedule_text(row: dict) -> str:
    """`step γ=0.1 every=30 · 100 epochs · batch 32`."""
    epochs = row["epochs"]
    epochs = (", ".join(f"{k} {v}" for k, v in epochs.items()) if isinstance(epochs, dict)
              else cell(epochs))
    return (f"{compact_params(row['scheduler'])} · {epochs} epochs · "
            f"batch {cell(row['batch_size'])}")


def params_text(kind: str, row: dict, scale: str, count: int | str | None) -> str:
    classes, size = SCALES[scale]
    where = f"at {scale} scale ({classes} classes, {size} px)"
    if count is None:
        return f"counting… {where}"
    if isinstance(count, str):
        return f"{count} {where}"
    return f"{count_text(count)} {where}"


# -- duplicating a model ---------------------------------------------------------------

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
VARIANT_FIELDS = (("name", "new id"), ("epochs", "epochs"), ("batch_size", "batch size"),
                  ("lr", "lr"), ("weight_decay", "weight decay"), ("momentum", "momentum"))


def variant_request(base: dict, values: dict[str, str], taken: set[str]) -> dict:
    """{base_id, new_id, overrides} for `Catalog.add_model_variant`, from the form's text;
    ValueError naming the field. Blank fields keep the base model's value and are left
    out of `overrides`."""
    from ensui.paper import normalize_id

    name = values.get("name", "").strip()
    if not ID_PATTERN.fullmatch(name):
        raise ValueError("name: give an id of letters, digits, '.', '_' or '-' "
                         "(at most 64, starting with a letter or digit)")
    if normalize_id(name) in {normalize_id(t) for t in taken}:
        raise ValueError(f"name: '{name}' is already in the catalog")
    overrides = {
        "epochs": whole_number("epochs", values.get("epochs", ""), 1),
        "batch_size": whole_number("batch size", values.get("batch_size", ""), 1),
        "lr": positive_number("lr", values.get("lr", "")),
        "weight_decay": positive_number("weight decay", values.get("weight_decay", "")),
        "momentum": positive_number("momentum", values.get("momentum", ""), allow_zero=True),
    }
    if overrides["epochs"] is not None and isinstance(base["epochs"], dict):
        raise ValueError("epochs: this recipe has backbone and classifier epochs; "
                         "leave it blank")
    if overrides["momentum"] is not None and "momentum" not in base["optimizer"]:
        raise ValueError(f"momentum: the {base['optimizer'].get('name')} optimizer of "
                         f"{base['id']} takes none; leave it blank")
    return {"base_id": base["id"], "new_id": name,
            "overrides": {k: v for k, v in overrides.items() if v is not None}}


class VariantForm(ModalScreen[dict | None]):
    """Name a copy of a model and change its epochs, batch size or optimizer settings.
    (A seed is not a model's: it is set per member in the spec.)"""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    VariantForm { align: center middle; }
    VariantForm #form { width: 64; height: auto; max-height: 100%; border: thick $primary;
                        background: $surface; padding: 0 1; }
    VariantForm .row { height: 1; margin-bottom: 1; }
    VariantForm .row Label { width: 12; }
    VariantForm .row Input { width: 1fr; }
    VariantForm #v-error { color: $error; height: auto; }
    VariantForm #v-buttons { height: auto; align-horizontal: right; }
    """

    def __init__(self, base: dict, taken: set[str]):
        super().__init__()
        self.base, self.taken = base, taken

    def compose(self) -> ComposeResult:
        optimizer = self.base["optimizer"]
        hints = {"name": f"e.g. {self.base['id']}-lr05", "epochs": epochs_text(self.base["epochs"]),
                 "batch_size": cell(self.base["batch_size"]), "lr": cell(optimizer.get("lr")),
                 "weight_decay": cell(optimizer.get("weight_decay")),
                 "momentum": cell(optimizer.get("momentum"))}
        with Vertical(id="form") as form:
            form.border_title = f"duplicate {self.base['id']}"
            yield Static("Blank fields keep the model's value.")
            for key, label in VARIANT_FIELDS:
                with Horizontal(classes="row"):
                    yield Label(label)
                    yield Input(placeholder=hints[key], id=f"v-{key}", compact=True)
            yield Static("", id="v-error")
            with Horizontal(id="v-buttons"):
                yield Button("Save", id="v-save", variant="primary", compact=True)
                yield Button("Cancel", id="v-cancel", compact=True)

    @on(Input.Submitted)
    @on(Button.Pressed, "#v-save")
    def _submit(self) -> None:
        values = {key: self.query_one(f"#v-{key}", Input).value for key, _ in VARIANT_FIELDS}
        try:
            self.dismiss(variant_request(self.base, values, self.taken))
        except ValueError as exc:
            self.query_one("#v-error", Static).update(str(exc))

    @on(Button.Pressed, "#v-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
