"""The ``dagllm`` command line: one command per stage plus helpers.

Every command reads ``params.yaml`` (``--params``) and accepts ``key=value`` overrides, e.g.
``dagllm train train.max_steps=5``. Errors in input print one clear message and exit non-zero.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from dagllm.catalog import CatalogError, default_catalog
from dagllm.params import DEFAULT_PARAMS_FILE, Params, ParamsError, load_params
from dagllm.paths import Layout, resolve_mirror
from dagllm.runtime import offline

app = typer.Typer(
    help="dagllm: build Korean instruction-tuned LLMs as one reproducible pipeline "
    "(ingest -> render -> validate -> balance -> train -> evaluate -> register).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
pipeline_app = typer.Typer(help="Kubeflow Pipelines: compile the DAG, run it locally.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file", show_default=True)]
Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="overrides as key=value with dotted keys, e.g. train.max_steps=5", show_default=False),
]

# Errors that are the user's to fix: print the message, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ParamsError, CatalogError, FileNotFoundError, ValueError)


def _params(path: Path, overrides: list[str] | None) -> Params:
    return load_params(path, overrides or [])


def _stage(title: str, params: Path, overrides: list[str] | None, fn: Callable[[Params, Layout], Any]) -> Any:
    """Load params, run a stage, print its summary; known failures become one-line errors."""
    from dagllm.stages.ingest import IngestError
    from dagllm.stages.validate import ValidationFailed

    offline()
    try:
        with console.status(f"[bold]{title}…"):
            p = _params(params, overrides)
            summary = fn(p, Layout.from_params(p.paths))
    except ValidationFailed as exc:
        for line in exc.summary.lines():
            console.print(f"[red]{line}")
        raise typer.Exit(1) from None
    except (IngestError, *USER_ERRORS) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for line in summary.lines():
        out.print(f"[green]✓[/green] {title}: {line}")
    return summary


@app.command()
def check(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Validate params.yaml and the catalog (sources, tasks, templates) without doing any work."""
    try:
        p = _params(params, overrides)
        cat = default_catalog()
        for s in p.ingest.sources:
            cat.source(s)
        for t in p.render.tasks:
            cat.task(t)
    except (ParamsError, CatalogError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    out.print(f"[green]✓[/green] {params}: ok ({len(cat.sources)} sources, {len(cat.tasks)} tasks in the catalog; "
              f"mirror {resolve_mirror(p.paths.mirror)})")


@app.command()
def ingest(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Read the source files from the mirror into data/canonical/records.parquet."""
    from dagllm.stages.ingest import run_ingest

    _stage("ingest", params, overrides, lambda p, lay: run_ingest(
        p.ingest, default_catalog(), resolve_mirror(p.paths.mirror), lay.canonical, lay.rejected, lay.ingest_report))


@app.command()
def render(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Render canonical rows through the Korean templates into data/rendered/records.parquet."""
    from dagllm.stages.render import run_render

    _stage("render", params, overrides, lambda p, lay: run_render(
        p.render, default_catalog(), lay.canonical, lay.rendered, lay.render_report))


@app.command()
def validate(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Check the rendered records with great-expectations; Data Docs in reports/validation/."""
    from dagllm.stages.validate import run_validate

    _stage("validate", params, overrides, lambda p, lay: run_validate(
        p.validate_, p.render.tasks, lay.rendered, lay.validation_dir))


@app.command()
def balance(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Cap each task, split train/validation; counts in reports/balance.json."""
    from dagllm.stages.balance import run_balance

    _stage("balance", params, overrides, lambda p, lay: run_balance(
        p.balance, lay.rendered, lay.train_split, lay.val_split, lay.balance_report))


@app.command()
def train(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Train the model on the balanced records; save it to models/final (safetensors)."""
    from dagllm.stages.train import run_train

    _stage("train", params, overrides, lambda p, lay: run_train(
        p.train, p.mlflow, lay.train_split, lay.model_dir, lay.train_run, lay.train_metrics, lay.train_curve,
        pipeline_run="cli"))


@app.command()
def evaluate(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Score the model with lm-evaluation-harness; reports/eval/metrics.json."""
    from dagllm.stages.evaluate import run_evaluate

    _stage("evaluate", params, overrides, lambda p, lay: run_evaluate(
        p.evaluate, p.mlflow, lay.canonical, lay.model_dir, lay.train_run, lay.eval_dir))


@app.command()
def register(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Register the model in the MLflow registry; set challenger/champion aliases."""
    from dagllm.stages.register import run_register

    _stage("register", params, overrides, lambda p, lay: run_register(
        p.register_, p.mlflow, lay.model_dir, lay.train_run, lay.eval_dir / "metrics.json", lay.register_report))


@app.command()
def where(params: ParamsOpt = DEFAULT_PARAMS_FILE) -> None:
    """Print where the results of the last run are: eval table, Data Docs, MLflow registry."""
    p = _params(params, [])
    lay = Layout.from_params(p.paths)
    rows = [
        ("evaluation metrics", lay.eval_dir / "metrics.json"),
        ("Data Docs", lay.validation_dir / "docs" / "index.html"),
        ("registration", lay.register_report),
        ("model", lay.model_dir),
    ]
    for what, path in rows:
        out.print(f"{what:>20}: {path.resolve()}{'' if path.exists() else '  (not yet produced)'}")
    out.print(f"{'MLflow registry':>20}: {p.mlflow.tracking_uri}  (open: mlflow ui --backend-store-uri "
              f"{p.mlflow.tracking_uri})")


@app.command()
def serve(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Serve the chat page and JSON API for serve.model_uri (the champion by default).

    Open http://HOST:PORT/ for the Korean chat page; POST /api/chat streams an answer as
    Server-Sent Events, POST /api/generate returns it as JSON; /healthz and /readyz for probes.
    Example: dagllm serve serve.model_uri=models/final serve.port=8080
    """
    from dagllm.serving.api import serve as run_server
    from dagllm.serving.model import ModelLoadError, load_model

    offline()
    try:
        p = _params(params, overrides)
        with console.status(f"[bold]loading {p.serve.model_uri}…"):
            loaded = load_model(p.serve.model_uri, p.mlflow, p.serve.device)
    except (ParamsError, ModelLoadError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    i = loaded.info
    out.print(f"[green]✓[/green] serving {i.name} version {i.version}"
              f"{f' (alias {i.alias})' if i.alias else ''} on http://{p.serve.host}:{p.serve.port}/")
    run_server(p.serve, loaded)


@pipeline_app.command("compile")
def pipeline_compile(
    params: ParamsOpt = DEFAULT_PARAMS_FILE,
    output: Annotated[Path, typer.Option(help="where to write the pipeline spec")] = Path("pipelines/compiled/dagllm.yaml"),
) -> None:
    """Compile the KFP v2 DAG to YAML (defaults taken from params.yaml)."""
    from pipelines.dagllm_pipeline import compile_pipeline

    try:
        path = compile_pipeline(_params(params, []), output)
    except ParamsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    out.print(f"[green]✓[/green] compiled pipeline -> {path}")


@pipeline_app.command("run-local")
def pipeline_run_local(
    params: ParamsOpt = DEFAULT_PARAMS_FILE,
    overrides: Overrides = None,
    workdir: Annotated[Path, typer.Option(help="where kfp.local keeps task outputs")] = Path("kfp_local"),
) -> None:
    """Run the whole DAG on this machine with kfp.local.SubprocessRunner."""
    from pipelines.dagllm_pipeline import run_local

    try:
        result = run_local(_params(params, overrides), workdir)
    except (ParamsError, CatalogError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    out.print(f"[green]✓[/green] pipeline finished: {result}")


def main() -> None:  # pragma: no cover - console entry point
    app(sys.argv[1:])
