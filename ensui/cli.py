"""The `ensui` command line: thin typer commands over the engine.

Domain errors become one message on stderr and an exit code (2: invalid input,
1: some job failed); tracebacks are for bugs only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ensui import __version__
from ensui.errors import EnsuiError
from ensui.home import Home, resolve_home

app = typer.Typer(add_completion=False,
                  help="Train heterogeneous ensembles, evaluate them under corruption, "
                       "relate diversity to ensemble gain. With no command: the app.")
catalog_app = typer.Typer(no_args_is_help=True, help="Models and subnetworks of the catalog.")
spec_app = typer.Typer(no_args_is_help=True, help="Check experiment specs.")
app.add_typer(catalog_app, name="catalog")
app.add_typer(spec_app, name="spec")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

RootHomeOption = Annotated[Optional[Path], typer.Option(
    "--home", envvar="ENSUI_HOME", help="ensui's folder (default: $ENSUI_HOME, else ./.ensui)")]
HomeOption = Annotated[Optional[Path], typer.Option(
    "--home", help="ensui's folder (overrides the one given before the command)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON on stdout")]


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context, home: RootHomeOption = None,
          readonly: Annotated[bool, typer.Option(
              "--readonly", help="the app only shows: no launching, no catalog edits")] = False,
          version: Annotated[bool, typer.Option("--version", help="print the version")] = False):
    """Without a command: open the app on the catalog."""
    if version:
        out.print(f"ensui {__version__}")
        raise typer.Exit()
    ctx.obj = resolve_home(home)
    if ctx.invoked_subcommand is None:
        from ensui.app import EnsuiApp
        from ensui.catalog import Catalog

        Catalog(ctx.obj.catalog).close()  # a newer or damaged catalog: a message, not the app
        EnsuiApp(ctx.obj, readonly=readonly).run()
        raise typer.Exit()


def _home(ctx: typer.Context, home: Path | None) -> Home:
    return resolve_home(home) if home else ctx.obj


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
def info(ctx: typer.Context, home: HomeOption = None, as_json: JsonOption = False):
    """Print where ensui keeps its catalog, runs, outputs and caches."""
    from ensui.catalog import Catalog
    from ensui.paper import data_dir

    h = _home(ctx, home)
    paths = {"home": h.root, "catalog": h.catalog, "runs": h.runs, "outputs": h.outputs,
             "cache": h.cache, "data": data_dir()}
    catalog = Catalog(h.catalog)
    facts = {**{k: str(v) for k, v in paths.items()}, "version": __version__,
             "schema_version": catalog.schema_version(), "counts": catalog.counts()}
    if as_json:
        return _print_json(facts)
    from ensui.render import info_table

    out.print(info_table(facts))


@catalog_app.command("models")
def catalog_models(ctx: typer.Context, home: HomeOption = None, as_json: JsonOption = False):
    """Table i: the models, their recipes and the paper's reported top-1."""
    from ensui.catalog import Catalog
    from ensui.render import models_table

    rows = Catalog(_home(ctx, home).catalog).models()
    _print_json(rows) if as_json else out.print(models_table(rows))


@catalog_app.command("subnets")
def catalog_subnets(ctx: typer.Context, home: HomeOption = None, as_json: JsonOption = False):
    """Table ii: the BootstrapNAS subnetwork configurations."""
    from ensui.catalog import Catalog
    from ensui.render import subnets_table

    rows = Catalog(_home(ctx, home).catalog).subnets()
    _print_json(rows) if as_json else out.print(subnets_table(rows))


@catalog_app.command("show")
def catalog_show(ctx: typer.Context, model_id: Annotated[str, typer.Argument(metavar="ID")],
                 home: HomeOption = None, as_json: JsonOption = False):
    """One model or subnetwork, by any id spelling the paper uses."""
    from ensui.catalog import Catalog
    from ensui.render import detail_table

    kind, row = Catalog(_home(ctx, home).catalog).show(model_id)
    _print_json({"kind": kind, **row}) if as_json else out.print(detail_table(kind, row))


@catalog_app.command("save-subnet")
def catalog_save_subnet(
        ctx: typer.Context,
        experiment: Annotated[str, typer.Argument(help="experiment id, id prefix or name")],
        index: Annotated[int, typer.Argument(help="the point's # in the search's front")],
        name: Annotated[str, typer.Argument(help="id of the new catalog sub-network")],
        home: HomeOption = None):
    """Save a point of an experiment's sub-network search front as a catalog
    sub-network, so specs can name it as a member."""
    from ensui.render import detail_table

    catalog = _existing_catalog(_home(ctx, home))
    row = catalog.save_front_point(catalog.find_experiment(experiment), index, name)
    out.print(detail_table("subnet", row))


@spec_app.command("check")
def spec_check(ctx: typer.Context, file: Path, home: HomeOption = None):
    """Validate a spec and print its plan size; exit 2 with the first problem."""
    from ensui.engine.spec import load_spec

    spec = load_spec(file)
    plan = _plan(spec, file, _home(ctx, home))
    joint = len(spec.all_labels()) - len(spec.members)
    err.print(f"{file}: ok — {len(spec.members)} members"
              + (f" and {joint} jointly trained" if joint else "")
              + f", {len(spec.validation.sets)} validation sets, {len(plan.jobs)} jobs")


@spec_app.command("schema")
def spec_schema():
    """Print the spec's JSON Schema (for editors)."""
    from ensui.engine.spec import json_schema

    _print_json(json_schema())


def _plan(spec, spec_path: Path, home: Home):
    """Plan against the user's catalog if it exists; otherwise against a fresh in-memory
    one, so checking a spec never creates or writes a catalog file."""
    from ensui.catalog import Catalog
    from ensui.engine.plan import make_plan

    catalog = Catalog(home.catalog) if home.catalog.exists() else Catalog.memory()
    return make_plan(spec, catalog, spec_path)


@app.command()
def headless(ctx: typer.Context,
             spec_file: Annotated[Path, typer.Option("--spec", help="experiment spec (YAML)")],
             home: HomeOption = None, as_json: JsonOption = False,
             dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan only")] = False,
             workers: Annotated[Optional[int], typer.Option(
                 help="CPU workers to start (default: one per GPU, else one); 0 runs the "
                      "jobs in this process", min=0)] = None,
             detach: Annotated[bool, typer.Option(
                 "--detach", help="queue, start the workers, return at once")] = False):
    """Run a spec: queue its jobs, run them through workers, print the results.
    Exit 0 / 1 (a job failed) / 2 (invalid input) / 130 (interrupted; re-run to resume)."""
    from ensui.headless import run_headless

    code = run_headless(spec_file, _home(ctx, home), as_json=as_json, dry_run=dry_run,
                        out=out, err=err, workers=workers, detach=detach)
    raise typer.Exit(code)


@app.command()
def export(ctx: typer.Context,
           experiment: Annotated[str, typer.Argument(help="experiment id, id prefix or name")],
           fmt: Annotated[str, typer.Option("--format", help="csv, json or parquet")] = "csv",
           out_dir: Annotated[Optional[Path], typer.Option("--out", help="folder to write")] = None,
           home: HomeOption = None):
    """Write every table of an experiment (members, epochs, teams, correlations,
    resilience, pairwise) as one file each."""
    from ensui.engine.export import export_tables

    catalog = _existing_catalog(_home(ctx, home))
    exp = catalog.find_experiment(experiment)
    folder = out_dir or Path(f"{exp['name']}-{exp['id'][:8]}")
    for path in export_tables(catalog.experiment_tables(exp["id"]), folder, fmt):
        out.print(str(path), highlight=False)


@app.command()
def plot(ctx: typer.Context,
         experiment: Annotated[str, typer.Argument(help="experiment id, id prefix or name")],
         out_dir: Annotated[Optional[Path], typer.Option("--out", help="folder to write")] = None,
         pairwise: Annotated[list[str], typer.Option(
             "--pairwise", help="pairwise metrics to draw per set ('all' for every one)")] = ["label_disagreement"],
         home: HomeOption = None):
    """Write the Figure B heatmap and pairwise member × member heatmaps (PNG and PDF)."""
    from ensui.engine.plots import figure_b_plot, pairwise_plots

    catalog = _existing_catalog(_home(ctx, home))
    exp = catalog.find_experiment(experiment)
    figure = catalog.figure_b(exp["id"])
    if not figure["metrics"]:
        raise EnsuiError(f"experiment '{exp['name']}' has no study to plot (analysis disabled, "
                         "or fewer than two members evaluated)")
    folder = out_dir or Path(f"{exp['name']}-{exp['id'][:8]}")
    matrices = [m for m in catalog.pairwise_matrices(exp["id"])
                if "all" in pairwise or m["metric"] in pairwise]
    for path in figure_b_plot(figure, folder) + pairwise_plots(matrices, folder):
        out.print(str(path), highlight=False)


@app.command()
def cka(ctx: typer.Context,
        experiment: Annotated[str, typer.Argument(help="experiment id, id prefix or name")],
        member_a: Annotated[str, typer.Argument(help="first member (rows)")],
        member_b: Annotated[str, typer.Argument(help="second member (columns)")],
        val_set: Annotated[str, typer.Option("--set", help="validation set")] = "clean",
        samples: Annotated[int, typer.Option(help="seeded images of the set", min=4)] = 512,
        out_dir: Annotated[Optional[Path], typer.Option(
            "--out", help="also write the heatmap (PNG and PDF) here")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        home: HomeOption = None):
    """Layer × layer CKA of two trained members: how each stage of one relates to each
    stage of the other (unbiased minibatch CKA of pooled stage outputs)."""
    from ensui.engine.layer_cka import experiment_layer_cka

    where = _home(ctx, home)
    catalog = _existing_catalog(where)
    exp = catalog.find_experiment(experiment)
    result = experiment_layer_cka(catalog, where, exp, member_a, member_b, val_set, samples)
    if as_json:
        sys.stdout.write(json.dumps({**result, "values": result["values"].tolist()}) + "\n")
    else:
        from ensui import render

        out.print(render.layer_cka_table(result))
    if out_dir:
        from ensui.engine.plots import heatmap

        stem = out_dir / f"layer-cka-{val_set}-{member_a}-{member_b}"
        values = [[None if v != v else float(v) for v in row] for row in result["values"]]
        for path in heatmap(values, result["rows"], result["cols"], f"layer CKA on {val_set}",
                            stem, diverging=False, label="CKA"):
            out.print(str(path), highlight=False)


def _existing_catalog(home: Home):
    from ensui.catalog import Catalog

    if not home.catalog.exists():
        raise EnsuiError(f"no catalog at {home.catalog}; run an experiment first")
    return Catalog(home.catalog)


SERVE_WARNING = ("textual-serve has no authentication: anyone who can reach {url} can "
                 "use ensui as you. Keep it on 127.0.0.1 and reach it through an SSH tunnel "
                 "(ssh -L {port}:127.0.0.1:{port} HOST).")


@app.command()
def serve(ctx: typer.Context,
          host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port to bind", min=1, max=65535)] = 8000,
          readonly: Annotated[bool, typer.Option(
              "--readonly", help="serve the app read-only")] = False,
          home: HomeOption = None):
    """Serve the app to a browser with textual-serve (localhost by default)."""
    import shlex

    from textual_serve.server import Server

    where = _home(ctx, home)
    command = f"{shlex.quote(sys.executable)} -m ensui --home {shlex.quote(str(where.root))}"
    err.print("[bold yellow]warning:[/] " + SERVE_WARNING.format(
        url=f"http://{host}:{port}", port=port), highlight=False)
    Server(command + (" --readonly" if readonly else ""), host=host, port=port,
           title="ensui").serve()


from ensui import cli_jobs  # noqa: E402  (registers on `app`, which it imports)

app.add_typer(cli_jobs.jobs_app, name="jobs")
app.add_typer(cli_jobs.workers_app, name="workers")
app.command("worker")(cli_jobs.worker)
app.command("status")(cli_jobs.status)


def main() -> None:
    try:
        app()  # standalone: click handles usage errors, --help and exit codes
    except EnsuiError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)
