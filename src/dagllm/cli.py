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
from rich.markup import escape
from rich.text import Text

from dagllm.data.catalog import CatalogError, default_catalog
from dagllm.params import DEFAULT_PARAMS_FILE, Params, ParamsError, load_params
from dagllm.paths import Layout, mirror_location
from dagllm.runtime import offline

app = typer.Typer(
    help="dagllm: build Korean instruction-tuned LLMs as one reproducible pipeline "
    "(ingest -> render -> validate -> decontaminate -> balance -> train -> evaluate -> register).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
pipeline_app = typer.Typer(help="Kubeflow Pipelines: compile the DAG, run it locally, submit it to a cluster, "
                            "schedule retraining.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
catalog_app = typer.Typer(help="The task registry: list tasks and categories, show sample renderings.",
                          no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


# Every text that comes from outside (messages, paths, ids, values) is printed literally: rich would
# read `[a-z0-9_]` in an error message as markup and drop it. Only the fixed labels are styled.
def _error(message: object) -> None:
    """``error: <message>`` on stderr, the message printed as it is."""
    console.print(Text.assemble(("error:", "red"), " ", str(message)), highlight=False)


def _ok(message: object) -> None:
    """``✓ <message>`` on stdout, the message printed as it is."""
    out.print(Text.assemble(("✓", "green"), " ", str(message)), highlight=False)


def _plain(message: object) -> None:
    out.print(str(message), markup=False, highlight=False)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file", show_default=True)]
Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="overrides as key=value with dotted keys, e.g. train.max_steps=5", show_default=False),
]

# Errors that are the user's to fix: print the message, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ParamsError, CatalogError, FileNotFoundError, ValueError)


def _params(path: Path, overrides: list[str] | None) -> Params:
    """params.yaml checked against the catalog (ids, readers, mapping keys), local tasks added."""
    from dagllm.data.teamdata import resolve

    return resolve(load_params(path, overrides or []))[0]


def _catalog(p: Params):
    """The catalog with the ``ingest.local`` sources and their tasks."""
    from dagllm.data.teamdata import with_local

    return with_local(default_catalog(), p)


def _stage(title: str, params: Path, overrides: list[str] | None, fn: Callable[[Params, Layout], Any]) -> Any:
    """Load params, run a stage, print its summary; known failures become one-line errors."""
    from dagllm.data.canonical import IngestError
    from dagllm.data.download import FetchError
    from dagllm.data.gate import ValidationFailed

    offline()
    try:
        with console.status(Text(f"{title}…", style="bold")):
            p = _params(params, overrides)
            summary = fn(p, Layout.from_params(p.paths))
    except ValidationFailed as exc:
        for line in exc.summary.lines():
            console.print(Text(str(line), style="red"), highlight=False)
        raise typer.Exit(1) from None
    except (FetchError, IngestError, *USER_ERRORS) as exc:
        _error(exc)
        raise typer.Exit(2) from None
    for line in summary.lines():
        _ok(f"{title}: {line}")
    return summary


@app.command()
def check(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Validate params.yaml and the catalog (sources, tasks, templates) without doing any work.

    Every template of every task (the catalog's and ingest.local task_files) is checked as render
    would run it: Jinja syntax, no tags that need a loader ({% include/extends/import %}), known
    variables, filters and tests, and its task's sample rendered under the render limits.
    """
    from dagllm.data.templating import RenderError, render_sample, task_template_problems

    try:
        p = _params(params, overrides)  # every id, reader and mapping key checked against the catalog
        cat = _catalog(p)  # a team task file's templates are checked as it loads (teamdata.with_local)
        for task in cat.tasks.values():  # every task's, statically, then run on its sample under the limits
            if problems := task_template_problems(task):
                raise CatalogError("; ".join(problems))
            render_sample(task)
    except (ParamsError, CatalogError, RenderError) as exc:
        _error(exc)
        raise typer.Exit(2) from None
    _ok(f"{params}: ok ({len(cat.sources)} sources, {len(cat.tasks)} tasks in the catalog; "
              f"mirror {mirror_location(p.paths.mirror) or 'upstream URLs'})")


@app.command()
def fetch(
    params: ParamsOpt = DEFAULT_PARAMS_FILE,
    overrides: Overrides = None,
    mirror: Annotated[str | None, typer.Option(
        "--mirror", help="directory or http(s) URL in the mirror layout (overrides paths.mirror); "
        "'upstream' = each file's pinned catalog URL", show_default=False)] = None,
) -> None:
    """Download the catalog files of ingest.sources (and optional_sources) into data/raw, checking sha256.

    Resumes interrupted downloads, retries network errors with backoff (fetch.retries,
    fetch.backoff_s) and keeps nothing that fails its checksum. Example:
    `dagllm fetch --mirror ../shared/data`.
    """
    from dagllm.data.canonical import selected_sources
    from dagllm.paths import mirror_location
    from dagllm.stages.fetch import run_fetch

    extra = [f"paths.mirror={mirror}"] if mirror else []
    _stage("fetch", params, [*(overrides or []), *extra], lambda p, lay: run_fetch(
        p.fetch, selected_sources(p.ingest, _catalog(p)), mirror_location(p.paths.mirror),
        lay.raw, lay.fetch_report))


@app.command()
def ingest(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Read the fetched files (data/raw) and ingest.local files into data/canonical/records.parquet.

    Rows that break their source's schema go to data/rejected/<source>.jsonl with the reason;
    reports/ingest.json counts read = kept + rejected per file. Run `dagllm fetch` first.
    """
    from dagllm.stages.ingest import run_ingest

    _stage("ingest", params, overrides, lambda p, lay: run_ingest(
        p.ingest, _catalog(p), lay.raw, lay.canonical, lay.rejected, lay.ingest_report))


@app.command()
def render(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Render canonical rows through the Korean templates into data/rendered/records.parquet."""
    from dagllm.stages.render import run_render

    _stage("render", params, overrides, lambda p, lay: run_render(
        p.render, _catalog(p), lay.canonical, lay.rendered, lay.render_report))


@app.command()
def validate(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Quality gate (great-expectations) on the canonical table and the rendered records.

    Rows failing a row-level expectation go to data/validated/quarantine/<point>.jsonl with the
    reason; the rest to data/validated/records.parquet. Exits 1 with the failed expectations when
    a suite fails or too many rows are quarantined. Data Docs in reports/validation/docs/.
    """
    from dagllm.stages.validate import run_validate

    _stage("validate", params, overrides, lambda p, lay: run_validate(
        p.validate_, p.render.tasks, _catalog(p), lay.canonical, lay.rendered, lay.validation_dir,
        lay.validated, lay.validation_quarantine, p.render.seed))


@app.command()
def decontaminate(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Drop validated records that overlap a benchmark item (character n-grams); list them in
    reports/decontamination.json with the item each one matches."""
    from dagllm.stages.decontaminate import run_decontaminate

    _stage("decontaminate", params, overrides, lambda p, lay: run_decontaminate(
        p.decontaminate, lay.validated, lay.validated_canonical, lay.decontaminated, lay.decontamination_report))


@app.command()
def balance(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Dedup (exact + MinHash), mix tasks by the seeded policy, split train/validation by task,
    and run the balanced point of the gate; reports/balance.json and reports/balance_mix.png."""
    from dagllm.data.gate import balanced_gate
    from dagllm.stages.balance import run_balance

    def run(p: Params, lay: Layout):
        cap = p.balance.per_task_cap if p.balance.mixing == "cap" else None
        gate = balanced_gate(p.validate_, p.render.tasks, cap, lay.balanced_validation_dir, lay.balanced_quarantine)
        return run_balance(p.balance, lay.decontaminated, lay.train_split, lay.val_split, lay.balance_report,
                           lay.balance_chart, gate)

    _stage("balance", params, overrides, run)


@app.command()
def train(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Train the model on the balanced records; save it to models/final (safetensors).

    One process by default; train.num_processes=N (per node) starts N ranks through torchrun (one per
    GPU, or gloo processes on CPU) and train.num_nodes=M joins a cluster job's rendezvous (docs/training.md).
    """
    from dagllm.stages.train import run_train

    _stage("train", params, overrides, lambda p, lay: run_train(
        p.train, p.mlflow, lay.train_split, lay.model_dir, lay.train_run, lay.train_metrics, lay.train_curve,
        pipeline_run="cli"))


@app.command()
def evaluate(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Score the model on KoBEST/KLUE with the KIT-19 protocol (lm-evaluation-harness, zero-shot by default).

    Writes reports/eval/: metrics.json (model and reference predictors: majority, constant per
    choice, random), samples/<task>.jsonl, table.md and report.html (beside the published KIT-19
    figures), chart.png, and the validation loss per category; all logged to the training run.
    """
    from dagllm.stages.evaluate import run_evaluate

    _stage("evaluate", params, overrides, lambda p, lay: run_evaluate(
        p.evaluate, p.mlflow, lay.validated_canonical, lay.model_dir, lay.train_run, lay.eval_dir, lay.val_split,
        raw_dir=lay.raw, preset=p.train.model))


@app.command()
def register(params: ParamsOpt = DEFAULT_PARAMS_FILE, overrides: Overrides = None) -> None:
    """Register the model in the MLflow registry; set challenger/champion aliases."""
    from dagllm.stages.register import run_register

    _stage("register", params, overrides, lambda p, lay: run_register(
        p.register_, p.mlflow, lay.model_dir, lay.train_run, lay.eval_dir / "metrics.json", lay.register_report,
        params_digest=p.digest(), balance_report=lay.balance_report, model_card_path=lay.model_card,
        promotion_path=lay.promotion_report, repo=Path.cwd()))


@app.command()
def promote(
    version: Annotated[int | None, typer.Option("--version", "-v", help="the model version to promote",
                                                show_default=False)] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="give champion back to previous-champion")] = False,
    force: Annotated[bool, typer.Option("--force", help="promote even when the gate says no (recorded as forced)")
                     ] = False,
    params: ParamsOpt = DEFAULT_PARAMS_FILE,
    overrides: Overrides = None,
) -> None:
    """Move the champion alias: `--version N` runs the promotion gate for version N against the
    champion (mlflow/promotion_policy.yaml), `--rollback` returns to the previous champion.

    The decision, with every number compared, goes to reports/promotion.json.
    """
    from dagllm.stages.promote import run_promote

    if (version is None) == (not rollback):
        _error("give exactly one of --version N or --rollback")
        raise typer.Exit(2)
    _stage("promote", params, overrides, lambda p, lay: run_promote(
        p.register_, p.mlflow, version, lay.promotion_report, force=force))


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
        _plain(f"{what:>20}: {path.resolve()}{'' if path.exists() else '  (not yet produced)'}")
    _plain(f"{'MLflow registry':>20}: {p.mlflow.tracking_uri}  (open: mlflow ui --backend-store-uri "
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
        with console.status(Text(f"loading {p.serve.model_uri}…", style="bold")):
            loaded = load_model(p.serve.model_uri, p.mlflow, p.serve.device)
    except (ParamsError, ModelLoadError) as exc:
        _error(exc)
        raise typer.Exit(2) from None
    i = loaded.info
    _ok(f"serving {i.name} version {i.version}"
              f"{f' (alias {i.alias})' if i.alias else ''} on http://{p.serve.host}:{p.serve.port}/")
    run_server(p.serve, loaded)


ProfileOpt = Annotated[Path | None, typer.Option("--profile", help="partial params file merged over --params "
                                                  "(key=value overrides still win), e.g. pipelines/cluster.yaml "
                                                  "(docs/deploy.md)")]


def _pipeline_params(params: Path, overrides: list[str] | None, profile: Path | None) -> Params:
    """params.yaml, the profile (pipelines/cluster.yaml) over it, then the overrides (they win)."""
    from dagllm.params import apply_overrides, params_from_dict
    from pipelines.dagllm_pipeline import with_profile

    if profile is None:
        return _params(params, overrides)
    return params_from_dict(apply_overrides(with_profile(_params(params, []), profile).to_dict(), overrides or []),
                            str(profile))


@pipeline_app.command("compile")
def pipeline_compile(
    params: ParamsOpt = DEFAULT_PARAMS_FILE,
    output: Annotated[Path, typer.Option(help="where to write the pipeline spec")] = Path("pipelines/compiled/dagllm.yaml"),
    profile: ProfileOpt = None,
    cluster: Annotated[bool, typer.Option("--cluster", help="refuse laptop defaults (SQLite tracking, sample "
                                          "mirror, tiny model) unless kubeflow.allow_laptop_defaults lists "
                                          "them; implied by --profile")] = False,
) -> None:
    """Compile the KFP v2 DAG to YAML (defaults taken from params.yaml, and the profile)."""
    from pipelines.dagllm_pipeline import ClusterProfileError, compile_pipeline

    try:
        path = compile_pipeline(_pipeline_params(params, [], profile), output, cluster=cluster or profile is not None)
    except (ParamsError, ClusterProfileError) as exc:
        _error(exc)
        raise typer.Exit(2) from None
    _ok(f"compiled pipeline -> {path}")


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
        _error(exc)
        raise typer.Exit(2) from None
    _ok(f"pipeline finished: {result}")


HostOpt = Annotated[str, typer.Option("--host", help="KFP API endpoint, e.g. http://localhost:8888 "
                                      "(kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8888:80)")]
VersionOpt = Annotated[str | None, typer.Option("--version-name", help="pipeline version name "
                                                "(default: UTC timestamp + params digest)")]


def _remote(action: Callable[[], Any]) -> None:
    """Run a submit/schedule call; server and argument errors become one line."""
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from pipelines.dagllm_pipeline import ClusterProfileError
    from pipelines.submit import SubmitError

    try:
        sub = action()
    except (ParamsError, CatalogError, SubmitError, ClusterProfileError) as exc:
        _error(exc)
        raise typer.Exit(2) from None
    except ApiException as exc:
        _error(f"KFP server answered {exc.status} {exc.reason}: {str(exc.body)[:300]}")
        raise typer.Exit(1) from None
    except HTTPError as exc:
        _error(f"cannot reach the KFP server: {exc}")
        raise typer.Exit(1) from None
    for line in sub.lines():
        _ok(line)


@pipeline_app.command("submit")
def pipeline_submit(
    host: HostOpt,
    params: ParamsOpt = DEFAULT_PARAMS_FILE,
    overrides: Overrides = None,
    run_name: Annotated[str | None, typer.Option(help="run display name (default: the version name)")] = None,
    version_name: VersionOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Upload the DAG as a new pipeline version and start one run in the experiment.

    The experiment is kubeflow.experiment, the run's service account kubeflow.service_account;
    overrides change the run's params_json, e.g. mlflow.tracking_uri=http://mlflow.dagllm:5000.
    """
    from pipelines.submit import submit

    _remote(lambda: submit(_pipeline_params(params, overrides, profile), host, run_name, version_name))


@pipeline_app.command("schedule")
def pipeline_schedule(
    host: HostOpt,
    cron: Annotated[str, typer.Option("--cron", help="when to retrain: 5-field cron ('0 3 * * 1' = Mondays "
                                      "03:00) or KFP's 6-field form with seconds first")],
    params: ParamsOpt = DEFAULT_PARAMS_FILE,
    overrides: Overrides = None,
    name: Annotated[str | None, typer.Option(help="recurring run name (default: dagllm-retrain)")] = None,
    version_name: VersionOpt = None,
    profile: ProfileOpt = None,
) -> None:
    """Upload the DAG as a new pipeline version and create a recurring run (scheduled retraining).

    One run at a time (max_concurrency 1), missed runs are not caught up.
    """
    from pipelines.submit import schedule

    _remote(lambda: schedule(_pipeline_params(params, overrides, profile), host, cron, name, version_name))


@catalog_app.command("ls")
def catalog_ls(
    params: ParamsOpt = DEFAULT_PARAMS_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """List tasks with category, sources, template counts and rows available in data/canonical."""
    from dagllm.data.preview import task_rows

    try:
        p = _params(params, [])
        rows = task_rows(Layout.from_params(p.paths).canonical, _catalog(p))
    except (ParamsError, CatalogError) as exc:
        _error(exc)
        raise typer.Exit(2) from None
    if as_json:
        out.print_json(data=rows)
        return
    from rich.table import Table

    table = Table(title=Text(f"{len(rows)} tasks in {len({r['category'] for r in rows})} categories"))
    for col in ("task", "category", "sources", "templates (i/q)", "records", "status"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(Text(str(cell)) for cell in (
            r["task"], f"{r['category']} ({r['category_name']})", ", ".join(r["sources"]),
            f"{r['templates']} ({r['instruction_templates']}/{r['question_templates']})",
            "-" if r["records"] is None else r["records"], r["status"])))
    out.print(table)


@catalog_app.command("show")
def catalog_show(
    task: Annotated[str, typer.Argument(help="task id (see `dagllm catalog ls`)")],
    params: ParamsOpt = DEFAULT_PARAMS_FILE,
    rows: Annotated[int, typer.Option(help="real rows from data/canonical to render too (when present)")] = 1,
) -> None:
    """Render the task's sample (and real rows when ingested) through every template."""
    from dagllm.data.preview import show_task

    try:
        p = _params(params, [])
        blocks = show_task(task, Layout.from_params(p.paths).canonical, rows, _catalog(p))
    except (ParamsError, CatalogError, ValueError) as exc:
        _error(exc)
        raise typer.Exit(2) from None
    for b in blocks:
        out.rule(escape(f"{b['template_id']} ({b['kind']}) · {b['record']}"))
        out.print("[bold]instruction:[/bold] ", end="")
        out.print(b["instruction"], markup=False, highlight=False)
        if b["input"]:
            out.print("[bold]input:[/bold] ", end="")
            out.print(b["input"], markup=False, highlight=False)
        out.print("[bold]output:[/bold] ", end="")
        out.print(b["output"], markup=False, highlight=False)
        if b["choices"]:
            out.print("[bold]choices:[/bold] ", end="")
            out.print(" | ".join(b["choices"]), markup=False, highlight=False)


DATA_STAGES = ("fetch", "ingest", "render", "validate", "decontaminate", "balance")


@app.command()
def recipe(
    name: Annotated[str, typer.Argument(help="kit19 (KIT-19's 19 sources, 5,000 per slot) or dag (DaG LLM 1.0: "
                                             "every task of the 13 categories)")],
    params: Annotated[Path, typer.Option("--params", "-p", help="base params file the recipe is laid over")]
    = DEFAULT_PARAMS_FILE,
    out_file: Annotated[Path | None, typer.Option("--out", help="params file to write (default "
                                                  "params.NAME.yaml; params.yaml for `dvc repro`)",
                                                  show_default=False)] = None,
    run: Annotated[bool, typer.Option("--run", help="then run the data stages (fetch .. balance) with it, "
                                      "timing each; times in reports/recipe_NAME.json")] = False,
) -> None:
    """Write the params of a named data mix (sources, tasks, caps, seeds) and optionally run its data stages.

    Sources of which the mirror (paths.mirror) holds no file, and tasks left without rows, are dropped
    and listed in the file's header. Example: `dagllm recipe kit19 --run`.
    """
    import json
    import time

    from dagllm.data.recipes import apply_recipe, load_recipe, write_recipe
    from dagllm.params import load_yaml_file

    dest = out_file or Path(f"params.{name}.yaml")
    try:
        base = load_yaml_file(params)
        r = apply_recipe(load_recipe(name), base, default_catalog(), mirror_location(base["paths"]["mirror"]))
    except (OSError, ParamsError, CatalogError) as exc:
        _error(exc)
        raise typer.Exit(2) from None
    write_recipe(r, dest)
    _ok(f"recipe {name}: {dest} ({len(r.params['ingest']['sources'])} sources, "
        f"{len(r.params['render']['tasks'])} tasks, at most {r.params['balance']['per_task_cap']} per task)")
    for what, items in (("sources not in the mirror", r.dropped_sources), ("tasks without rows", r.dropped_tasks)):
        if items:
            _plain(f"  dropped {what}: {', '.join(items)}")
    if not run:
        _plain(f"  run it: dagllm recipe {name} --run, or `dagllm <stage> --params {dest}`")
        return
    commands = {"fetch": fetch, "ingest": ingest, "render": render, "validate": validate,
                "decontaminate": decontaminate, "balance": balance}
    seconds: dict[str, float] = {}
    for stage in DATA_STAGES:
        start = time.perf_counter()
        commands[stage](params=dest, overrides=None, **({"mirror": None} if stage == "fetch" else {}))
        seconds[stage] = round(time.perf_counter() - start, 1)
    lay = Layout.from_params(_params(dest, []).paths)
    lay.reports.mkdir(parents=True, exist_ok=True)
    (lay.reports / f"recipe_{name}.json").write_text(json.dumps(
        {"recipe": name, "params": str(dest), "seconds": seconds, "dropped_sources": r.dropped_sources,
         "dropped_tasks": r.dropped_tasks}, indent=2), encoding="utf-8")
    _plain("  seconds per stage: " + ", ".join(f"{k} {v}" for k, v in seconds.items()))


def main() -> None:  # pragma: no cover - console entry point
    app(sys.argv[1:])


if __name__ == "__main__":  # `python -m dagllm.cli` for the torchrun / deepspeed launchers
    app()


@catalog_app.command("lint")
def catalog_lint(
    mirror: Annotated[str, typer.Option(help="where the real rows are: auto (../shared/data when present, "
                                        "else the bundled samples), samples, none, or a directory in the "
                                        "mirror layout")] = "auto",
    rows: Annotated[int, typer.Option(help="real rows read per source file (0 = every row)")] = 200,
    task: Annotated[list[str] | None, typer.Option(help="lint only this task (repeatable)")] = None,
    jobs: Annotated[int, typer.Option(help="worker processes, one task each at a time (0 = one per CPU; "
                                      "1 = in this process); the result does not depend on it")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """The Korean lint: render every template on its sample and on real rows and check form and meaning.

    Rules, by the ids the table and --json report (docs/tasks.md, "The Korean lint"):
    particles: a particle after a value disagrees with it;
    literal: a particle written literally after a value, not as a {이/가} marker;
    format: the output lacks the format the instruction names (quoted options, 예/아니요, 보기:, N번,
    그대로 쓰세요, a reason, a sentence);
    repeat: the output (spaces, punctuation, quotes ignored) is the input or a value of 2+ characters
    shown in the prompt, and not one of the answer choices;
    giveaway: a short answer begins the input or a value, then a particle, a space or punctuation;
    form: 한/두세/... 문장으로 and another number of sentences; 숫자로/몇 점/점수를 and no digit;
    labels_stated: a closed-label template's own words do not state every answer it may give
    (예/아니요 exempt in a yes/no question);
    doubled_quotes: a template quote against a same-kind quote at a value's edge;
    identical_pair: two prompt variables with one text of 5+ characters;
    connective: a sentence with 왜냐하면 that does not end in 때문이다.

    A task none of whose source files is in the mirror reads the bundled sample files instead.
    Prints per task the counts per rule and per template, with examples; exits 1 when any rule
    finds anything.
    """
    from dagllm.data.lint import lint_catalog, table, to_json
    from dagllm.paths import SAMPLES_DIR, resolve_mirror

    where = None if mirror == "none" else resolve_mirror(mirror)
    try:
        with console.status(Text(f"linting {len(task) if task else 'every'} task(s) on {where or 'samples only'}")):
            results = lint_catalog(default_catalog(), where, rows or None, task, jobs=jobs or None,
                                   fallback=None if where is None else SAMPLES_DIR)
    except (CatalogError, ValueError) as exc:
        _error(exc)
        raise typer.Exit(2) from None
    out.print(to_json(results) if as_json else table(results), markup=False, highlight=False)
    bad = [r.task for r in results if not r.ok]
    if bad:
        console.print(Text.assemble((f"{len(bad)} task(s) fail the Korean lint:", "red"), " ", ", ".join(bad)),
                      highlight=False)
        raise typer.Exit(1)
