"""Experiment specs: pydantic models, YAML loading with line-accurate errors, round-trip.

A spec names the members, the dataset, the validation sets and the training overrides.
Every choice that the paper leaves open is a field here, so it is recorded with each
result. `load_spec` raises `SpecError` with one message naming the file, line and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PositiveInt, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from ensui.engine.data.corruptions import ALL_CORRUPTIONS, CATEGORIES
from ensui.engine.ensembles import CONSENSUS
from ensui.errors import SpecError

DEFAULT_SETS = ("clean", "noise", "blur", "weather", "digital")
VALID_SET_NAMES = ("clean", *CATEGORIES, *ALL_CORRUPTIONS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DatasetSpec(_Strict):
    """Training data: the embedded default (shipped digits) or an ImageNet-layout folder."""

    kind: Literal["embedded", "folder"] = "embedded"
    path: Path | None = Field(None, description="root holding train/ and val/ (kind: folder)")
    image_size: PositiveInt | None = Field(None, description="default: 32 embedded, 224 folder")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="embedded: held-out share")
    split_seed: int = 0

    @model_validator(mode="after")
    def _path_matches_kind(self):
        if self.kind == "folder" and self.path is None:
            raise ValueError("kind 'folder' needs a 'path' with train/ and val/ inside")
        if self.kind == "embedded" and self.path is not None:
            raise ValueError("the embedded dataset takes no 'path'; use kind: folder")
        return self

    @property
    def size(self) -> int:
        return self.image_size or (32 if self.kind == "embedded" else 224)


class ValidationSpec(_Strict):
    """Validation sets: `clean`, corruption categories, or single corruptions."""

    sets: list[str] = Field(default_factory=lambda: list(DEFAULT_SETS), min_length=1)
    severities: list[Annotated[int, Field(ge=1, le=5)]] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5], min_length=1)
    source: Literal["generate", "imagenet_c", "cifar_c"] = Field(
        "generate", description="generate corruptions, or read released ImageNet-C / CIFAR-10-C")
    path: Path | None = Field(None, description="released corrupted data (imagenet_c, cifar_c)")
    constants: Literal["auto", "imagenet", "small"] = Field(
        "auto", description="severity constants: ImageNet-C's, CIFAR-C's milder ones, or by size")
    seed: int = Field(0, description="seeds the per-sample corruption draws")
    limit: PositiveInt | None = Field(None, description="use only the first N clean images")

    @field_validator("sets")
    @classmethod
    def _known_sets(cls, sets: list[str]) -> list[str]:
        for name in sets:
            if name not in VALID_SET_NAMES:
                raise ValueError(f"unknown validation set '{name}'{_suggest(name, VALID_SET_NAMES)}")
        if len(set(sets)) != len(sets):
            raise ValueError("validation sets are listed twice")
        return sets

    @model_validator(mode="after")
    def _path_matches_source(self):
        if self.source != "generate" and self.path is None:
            raise ValueError(f"source '{self.source}' needs a 'path' to the released data")
        return self


class DinoSpec(_Strict):
    """The DINO recipe's settings (methods.md §8) that Table i leaves out. Blank ones take
    the paper-scale value from DINO's reference recipe, or a small-scale one at tiny scale;
    every resolved value is recorded in the job's parameters."""

    backbone_epochs: PositiveInt | None = Field(
        None, description="self-supervised stage; default training.epochs, else Table i's")
    probe: Literal["cached", "augmented"] | None = Field(
        None, description="linear probe on features computed once (default with the "
        "embedded data) or on fresh augmented crops every epoch (DINO's; default for folders)")
    probe_epochs: PositiveInt | None = Field(
        None, description="linear probe; default Table i's (100) when cached, else "
                          "training.epochs, else Table i's")
    n_local: int | None = Field(None, ge=0, description="local crops; paper 8, tiny 4")
    local_size: PositiveInt | None = Field(None, description="local crop px; paper 96, tiny 16")
    out_dim: PositiveInt | None = Field(None, description="prototypes; paper 65536, tiny 1024")
    teacher_temp: float | None = Field(
        None, gt=0, description="after the warm-up; paper 0.04 (DINO's default), tiny 0.02")
    warmup_teacher_temp: float | None = Field(
        None, gt=0, description="at the first epoch; default teacher_temp")
    warmup_teacher_temp_fraction: float = Field(
        0.0, ge=0, le=1, description="of the backbone epochs; DINO's ViT-S recipe: "
        "0.04 -> 0.07 over 30 of 300 (0.1)")
    teacher_momentum: float | None = Field(
        None, ge=0, lt=1, description="EMA start, cosine to 1; paper 0.996, tiny 0.99")
    warmup_fraction: float = Field(
        1 / 30, ge=0, le=1, description="learning-rate warm-up, of the backbone epochs (10/300)")
    clip_grad: float = Field(3.0, ge=0, description="per-parameter grad norm; 0 turns it off")
    freeze_last_layer: int = Field(1, ge=0, description="epochs with the head's last layer frozen")
    probe_lr: float | None = Field(
        None, gt=0, description="SGD, scaled by batch/256; paper 0.001, tiny 0.4")


class SupernetSpec(_Strict):
    """The BootstrapNAS super-network that sub-network members are cut from (methods.md §9):
    progressive shrinking driven by a Listing 1 JSON, then an optional NSGA-II search."""

    listing: Path | None = Field(None, description="a Listing 1 JSON; default the paper's")
    backend: Literal["ensui", "nncf"] = Field(
        "ensui", description="ensui's elastic ResNet50, or NNCF's BootstrapNAS (extra 'nncf')")
    total_epochs: PositiveInt | None = Field(
        None, description="shrink every stage in proportion to this total; paper: Listing 1's "
                          "165, tiny 7")
    warmup_epochs: int | None = Field(
        None, ge=0, description="full-network training before the first stage, for a "
                                "super-network not started from `init_weights`; paper 0, tiny 4")
    init_weights: Path | None = Field(None, description="ResNet50 state_dict to start from")
    lr: float | None = Field(
        None, gt=0, description="every stage's learning rate; default Listing 1's init_lr "
                                "(2.5e-6 fine-tunes pretrained weights) at paper scale, 0.01 tiny")
    batch_size: PositiveInt | None = Field(None, description="default training.batch_size, "
                                           "else 64")
    bn_samples: PositiveInt | None = Field(
        None, description="BN recalibration images; default Listing 1's (1500), tiny 256")
    seed: int | None = Field(None, description="default training.seed")
    search: bool = Field(True, description="NSGA-II over the last stage's space, after it")
    num_evals: PositiveInt | None = Field(None, description="default Listing 1's (1000), tiny 60")
    population: PositiveInt | None = Field(None, description="default Listing 1's (50), tiny 12")


class TrainingSpec(_Strict):
    """Overrides applied to every member's Table i recipe (a member may override again)."""

    epochs: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    crop_scale: tuple[float, float] | None = Field(
        None, description="RandomResizedCrop scale; default Table iii's (0.08, 1.0)")
    hflip: float | None = Field(None, ge=0, le=1, description="flip probability; default 0.5")
    warmup_epochs: float = Field(
        0.0, ge=0, description="linear learning-rate warm-up (not in Table i; 0 keeps it out)")
    schedule_scaling: Literal["proportional", "absolute"] = Field(
        "proportional", description="with fewer epochs, shrink step sizes in proportion")
    dino: DinoSpec = Field(default_factory=DinoSpec)
    supernet: SupernetSpec = Field(default_factory=SupernetSpec)

    @field_validator("crop_scale")
    @classmethod
    def _ordered_scale(cls, value):
        if value is not None and not (0 < value[0] <= value[1] <= 1):
            raise ValueError("crop_scale must be (low, high) with 0 < low <= high <= 1")
        return value


class MemberSpec(_Strict):
    """One ensemble member: a catalog model, optionally with its own overrides."""

    model: str
    name: str | None = Field(None, description="label; default the model id")
    seed: int | None = None
    epochs: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    lr: float | None = Field(None, gt=0)
    weights: Path | None = Field(None, description="state_dict file to start from")
    train: bool = Field(True, description="false: evaluate the weights as given")

    @property
    def label(self) -> str:
        return self.name or self.model


class JointModelSpec(_Strict):
    """One model of a jointly trained team (methods.md §10)."""

    model: str
    name: str | None = Field(None, description="label inside the team; default the model id")
    seed: int | None = Field(None, description="its initialisation and dropout; default the team's")
    lr: float | None = Field(None, gt=0)

    @property
    def label(self) -> str:
        return self.name or self.model


class JointSpec(_Strict):
    """A team trained jointly with a diversity-enforcing loss, once per λ: each λ gives one
    ensemble, compared in the study with the independently trained members' teams."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="prefix of its members' labels, e.g. ncl[0.5]/SqueezeNet")
    models: list[JointModelSpec] = Field(min_length=2)
    loss: Literal["independent", "ncl", "balanced", "gncl"] = Field(
        "balanced", description="methods.md §10; independent is λ = 0 of any")
    lambdas: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], min_length=1,
        description="one ensemble per value")
    consensus: Literal["average", "logit_average"] = Field(
        "average", description="the ensemble inside the balanced loss")
    epochs: PositiveInt | None = Field(None, description="default training.epochs, else "
                                       "the longest of the models' Table i epochs")
    batch_size: PositiveInt | None = Field(None, description="shared by the members; default "
                                           "training.batch_size, else the smallest of Table i's")
    seed: int | None = Field(None, description="data order and augmentation; default training.seed")

    @field_validator("models", mode="before")
    @classmethod
    def _bare_ids(cls, models: Any):
        if isinstance(models, list):
            return [{"model": m} if isinstance(m, str) else m for m in models]
        return models

    @model_validator(mode="after")
    def _valid(self):
        labels = [m.label for m in self.models]
        twice = [x for x in labels if labels.count(x) > 1]
        if twice:
            raise ValueError(f"model '{twice[0]}' appears twice in the team; give one a 'name'")
        if len(set(self.lambdas)) != len(self.lambdas):
            raise ValueError("lambdas: a value is listed twice")
        if self.loss == "balanced" and max(self.lambdas) > 1:
            raise ValueError("lambdas: the balanced loss needs 0 <= λ <= 1")
        return self

    def member_label(self, lam: float, model: JointModelSpec) -> str:
        return f"{self.team_label(lam)}/{model.label}"

    def team_label(self, lam: float) -> str:
        return f"{self.name}[{lam:g}]"


IMPROVEMENTS = ("vs_mean", "vs_best", "eir", "nll_gain")
DEFAULT_FIGURE_ROWS = ("label_disagreement", "attribution_diversity", "activation_diversity",
                       "average_accuracy")
ATTRIBUTION_METHODS = ("integrated_gradients", "saliency", "input_x_gradient", "gradient_shap",
                       "layer_grad_cam")
SIMILARITIES = ("cosine", "spearman", "topk")


class AttributionSpec(_Strict):
    """Input-attribution diversity (methods.md §4): maps of every member for the same
    images and target, pooled to a common grid, compared image by image."""

    enabled: bool = True
    methods: list[Literal[ATTRIBUTION_METHODS]] = Field(
        default_factory=lambda: ["integrated_gradients"], min_length=1,
        description="captum methods; the first gives the metric attribution_diversity")
    samples: PositiveInt = Field(256, description="seeded subset of each validation set")
    seed: int = 0
    target: Literal["label", "ensemble"] = Field(
        "label", description="class attributed for every member: the true label or the "
                             "prediction of the ensemble of all members (average)")
    grid: PositiveInt = Field(14, description="maps are pooled to grid × grid cells")
    reduction: Literal["abs_sum", "sum", "l2"] = Field("abs_sum", description="over channels")
    similarity: Literal[SIMILARITIES] = "cosine"
    topk_fraction: float = Field(0.05, gt=0, le=1, description="share of cells for 'topk'")
    n_steps: PositiveInt = Field(32, description="integration steps of integrated_gradients")
    shap_samples: PositiveInt = Field(16, description="samples per image of gradient_shap")
    batch_size: PositiveInt = Field(16, description="images per attribution call")

    @field_validator("methods")
    @classmethod
    def _once_each(cls, methods: list[str]) -> list[str]:
        if len(set(methods)) != len(methods):
            raise ValueError("a method is named twice")
        return methods

    def metric_names(self) -> list[str]:
        """`attribution_diversity` (first method), and one per method when there are several."""
        names = ["attribution_diversity"]
        return names + [f"attribution_diversity:{m}" for m in self.methods] if len(
            self.methods) > 1 else names


class ActivationSpec(_Strict):
    """Activation diversity (methods.md §5): 1 − linear CKA of penultimate features."""

    enabled: bool = True
    samples: PositiveInt | None = Field(2048, description="seeded subset; null: the whole set")
    seed: int = 0
    batch_size: Annotated[int, Field(ge=4)] = Field(
        256, description="fixed CKA minibatch; the last partial batch is dropped")
    estimator: Literal["unbiased", "biased"] = "unbiased"


class AnalysisSpec(_Strict):
    """Teams, consensus and the correlation study, all computed from cached outputs."""

    enabled: bool = True
    team_sizes: list[Annotated[int, Field(ge=2)]] | Literal["all"] = Field(
        default_factory=lambda: [2, 3], description="sizes of the teams formed from all members")
    teams: list[list[str]] | None = Field(
        None, description="explicit teams (member names); replaces team_sizes")
    consensus: list[Literal[CONSENSUS]] = Field(default_factory=lambda: ["average"], min_length=1)
    improvement: Literal[IMPROVEMENTS] = Field(
        "vs_mean", description="ensemble improvement correlated with each metric")
    # before `metrics`, whose check reads them
    attribution: AttributionSpec = Field(default_factory=AttributionSpec)
    activation: ActivationSpec = Field(default_factory=ActivationSpec)
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_FIGURE_ROWS), min_length=1,
                               description="Figure B rows: diversity metrics and average_accuracy")
    bootstrap: PositiveInt = Field(1000, description="resamples for the 95 % intervals")
    seed: int = 0
    reference_member: str | None = Field(
        None, description="baseline member for corruption error CE/mCE (e.g. a ResNet50)")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: list[str], info: ValidationInfo) -> list[str]:
        from ensui.engine.diversity import METRICS

        attribution, activation = info.data.get("attribution"), info.data.get("activation")
        if attribution is None or activation is None:
            return metrics  # their own errors are reported
        extra = _extra_metrics(attribution, activation)
        known = (*METRICS, "gncl_diversity", "average_accuracy", *extra)
        for name in metrics:
            if name.startswith("attribution_diversity") and not attribution.enabled:
                raise ValueError(f"'{name}' needs attribution.enabled: true")
            if name == "activation_diversity" and not activation.enabled:
                raise ValueError(f"'{name}' needs activation.enabled: true")
            if name not in known:
                raise ValueError(f"unknown metric '{name}'{_suggest(name, known)}")
        return metrics

    def extra_metrics(self) -> list[str]:
        """Metrics beyond prediction diversity that this analysis computes."""
        return _extra_metrics(self.attribution, self.activation)


def _extra_metrics(attribution: AttributionSpec, activation: ActivationSpec) -> list[str]:
    names = attribution.metric_names() if attribution.enabled else []
    return names + (["activation_diversity"] if activation.enabled else [])


class ExecutorSpec(_Strict):
    """Where jobs run: `local` workers (default), or Slurm through submitit, each job a
    Slurm job whose progress goes to event files in its run folder (never straight into
    SQLite over a network filesystem); the headless process folds them into the catalog."""

    kind: Literal["local", "slurm"] = "local"
    partition: str | None = None
    gpus_per_job: Annotated[int, Field(ge=0)] = 1
    cpus_per_job: PositiveInt = 8
    mem_gb: float | None = Field(None, gt=0)
    time_min: PositiveInt = Field(24 * 60, description="time limit of each Slurm job")
    array_parallelism: PositiveInt = Field(16, description="Slurm jobs running at once")
    folder: Path | None = Field(None, description="submitit's folder; default <home>/slurm "
                                                  "(must be on a filesystem the nodes share)")
    cluster: Literal["slurm", "local"] = Field(
        "slurm", description="'local': submitit's LocalExecutor on this machine (tests)")


class EvaluationSpec(_Strict):
    store: Literal["logits", "probs"] = "logits"
    batch_size: PositiveInt = 256


class Spec(_Strict):
    name: str = Field(min_length=1)
    scale: Literal["tiny", "paper"] = "tiny"
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    members: list[MemberSpec] = Field(min_length=1)
    joint: list[JointSpec] = Field(
        default_factory=list, description="teams trained jointly (recipe ncl), a λ sweep each")

    def joint_members(self) -> list[tuple[JointSpec, float, list[str]]]:
        """(team spec, λ, member labels) of every jointly trained ensemble."""
        return [(team, lam, [team.member_label(lam, m) for m in team.models])
                for team in self.joint for lam in team.lambdas]

    def all_labels(self) -> list[str]:
        """Every member's label: the independent members, then the joint teams'."""
        return [m.label for m in self.members] + [
            label for _, _, labels in self.joint_members() for label in labels]

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_by_name(cls, value: Any):
        return {"kind": value} if isinstance(value, str) else value

    @field_validator("members", mode="before")
    @classmethod
    def _bare_ids(cls, members: Any):
        if isinstance(members, list):
            return [{"model": m} if isinstance(m, str) else m for m in members]
        return members

    @field_validator("members")
    @classmethod
    def _unique_labels(cls, members: list[MemberSpec]) -> list[MemberSpec]:
        seen: set[str] = set()
        for member in members:
            if member.label in seen:
                raise ValueError(f"member '{member.label}' appears twice; give one a 'name'")
            seen.add(member.label)
        return members

    @model_validator(mode="after")
    def _teams_fit_members(self):
        labels = [m.label for m in self.members]
        sizes = self.analysis.team_sizes
        chosen = "team_sizes" in self.analysis.model_fields_set  # defaults shrink to fit
        if chosen and sizes != "all" and max(sizes) > len(labels):
            raise ValueError(f"analysis.team_sizes: {max(sizes)} is more than the "
                             f"{len(labels)} members")
        names = [team.name for team in self.joint]
        clash = [n for n in names if names.count(n) > 1 or n in labels]
        if clash:
            raise ValueError(f"joint: the name '{clash[0]}' is used twice")
        reference = self.analysis.reference_member
        if reference is not None and reference not in labels:
            raise ValueError(f"analysis.reference_member: '{reference}' is not a member name"
                             f"{_suggest(reference, labels)}")
        for team in self.analysis.teams or []:
            unknown = [name for name in team if name not in labels]
            if unknown:
                raise ValueError(f"analysis.teams: '{unknown[0]}' is not a member name"
                                 f"{_suggest(unknown[0], labels)}")
        return self


def _suggest(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# -- loading ------------------------------------------------------------------------


def load_spec(path: str | Path) -> Spec:
    """Read, validate and resolve a spec file; SpecError with file:line on any problem."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found")
    return parse_spec(path.read_text(), path)


def parse_spec(text: str, path: Path) -> Spec:
    """A spec from its text (e.g. the copy an experiment recorded); `path` names it in
    errors and anchors its relative paths."""
    data, lines = _parse_yaml(text, path)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_first_error(exc, path, lines)) from None
    _resolve_paths(spec, path.parent, lines, path)
    return spec


def _parse_yaml(text: str, path: Path) -> tuple[dict, dict[tuple, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise SpecError(f"{where}: YAML syntax error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: YAML error: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a mapping of keys (name, members, ...), got "
                        f"{type(data).__name__ if data is not None else 'an empty file'}")
    lines: dict[tuple, int] = {}
    _index_lines(node, (), lines)
    return data, lines


def _index_lines(node, loc: tuple, lines: dict[tuple, int]) -> None:
    """Map each key path, e.g. ('members', 2, 'model'), to its 1-based line."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[loc + (key.value,)] = key.start_mark.line + 1
            _index_lines(value, loc + (key.value,), lines)
            lines[loc + (key.value,)] = key.start_mark.line + 1  # the key's line, not the value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, loc + (i,), lines)


def _line_of(loc: tuple, lines: dict[tuple, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _first_error(exc: ValidationError, path: Path, lines: dict[tuple, int]) -> str:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    field = ".".join(str(p) for p in loc) or "(top level)"
    line = _line_of(loc, lines)
    where = f"{path}:{line}" if line else str(path)
    if err["type"] == "extra_forbidden":
        message = f"unknown key '{loc[-1]}'"
    elif err["type"] == "missing":
        message = "required field is missing"
    else:
        message = err["msg"].removeprefix("Value error, ")
        if "input" in err and err["type"].endswith(("_type", "_parsing")):
            message += f" (got {err['input']!r})"
    more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    return f"{where}: {field}: {message}{more}"


def _resolve_paths(spec: Spec, base: Path, lines: dict, path: Path) -> None:
    """Make paths absolute (relative to the spec file) and check that they exist."""
    nas = spec.training.supernet
    checks = [(spec.dataset, "path", ("dataset", "path")),
              (spec.validation, "path", ("validation", "path")),
              (nas, "listing", ("training", "supernet", "listing")),
              (nas, "init_weights", ("training", "supernet", "init_weights"))]
    checks += [(m, "weights", ("members", i, "weights")) for i, m in enumerate(spec.members)]
    for owner, attr, loc in checks:
        value = getattr(owner, attr)
        if value is None:
            continue
        resolved = (base / value.expanduser()).resolve()
        if not resolved.exists():
            line = _line_of(loc, lines)
            field = ".".join(map(str, loc))
            raise SpecError(f"{path}:{line}: {field}: path does not exist: {resolved}")
        setattr(owner, attr, resolved)


def located_error(path: Path | None, loc: tuple, message: str) -> SpecError:
    """`file:line: a.0.b: message` for a field found wrong after validation."""
    line = spec_line(path, loc) if path else None
    where = f"{path}:{line}: " if path and line else ""
    return SpecError(f"{where}{'.'.join(map(str, loc))}: {message}")


def spec_line(path: Path, loc: tuple) -> int | None:
    """The line of a field in a spec file, for errors found after validation."""
    _, lines = _parse_yaml(Path(path).read_text(), Path(path))
    return _line_of(loc, lines)


def dump_spec(spec: Spec) -> str:
    """YAML that `load_spec` reads back into an equal Spec (defaults left out)."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    data.setdefault("members", [m.model_dump(mode="json", exclude_defaults=True)
                                for m in spec.members])
    return yaml.safe_dump(data, sort_keys=False)


def json_schema() -> dict:
    return Spec.model_json_schema()
