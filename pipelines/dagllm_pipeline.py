"""The KFP v2 DAG: ingest -> render -> validate -> decontaminate -> balance -> train -> evaluate -> register.

The pipeline has one parameter, ``params_json``: the whole of params.yaml as JSON, with its
default taken from params.yaml at compile time (nothing is read from the environment). Every
component parses it into the same typed model the CLI and DVC stages use.
"""


# No `from __future__ import annotations` here or in components/: kfp reads the annotations.
import json
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from components.stages import (
    balance_op,
    decontaminate_op,
    evaluate_op,
    ingest_op,
    register_op,
    render_op,
    train_op,
    validate_op,
)
from dagllm.params import Params
from dagllm.paths import resolve_mirror
from dagllm.tracking import absolute_uri

PIPELINE_NAME = "dagllm"
DEFAULT_OUTPUT = Path("pipelines/compiled/dagllm.yaml")


def params_json(params: Params) -> str:
    return json.dumps(params.to_dict(), ensure_ascii=False, sort_keys=True)


def build_pipeline(params: Params):
    """The ``@dsl.pipeline`` function with ``params`` as the default of ``params_json``."""
    default = params_json(params)

    @dsl.pipeline(name=PIPELINE_NAME, description="Korean instruction tuning, DaG LLM / KIT-19 style: "
                  "ingest, render, validate, decontaminate, balance, train, evaluate, register.")
    def dagllm(params_json: str = default) -> str:
        ingest = ingest_op(params_json=params_json).set_display_name("ingest sources")
        render = render_op(params_json=params_json, canonical=ingest.outputs["canonical"])
        render.set_display_name("render Korean templates")
        validate = validate_op(params_json=params_json, canonical=ingest.outputs["canonical"],
                               rendered=render.outputs["rendered"])
        validate.set_display_name("validate (great-expectations)")
        decontaminate = decontaminate_op(params_json=params_json, validated=validate.outputs["validated"],
                                         canonical=ingest.outputs["canonical"])
        decontaminate.set_display_name("decontaminate (benchmark overlap)")
        balance = balance_op(params_json=params_json, records=decontaminate.outputs["decontaminated"])
        balance.set_display_name("dedup + balance tasks")
        train = train_op(params_json=params_json, train=balance.outputs["train"]).set_display_name("fine-tune")
        evaluate = evaluate_op(params_json=params_json, canonical=ingest.outputs["canonical"],
                               model=train.outputs["model"]).set_display_name("evaluate (KIT-19 protocol)")
        register = register_op(params_json=params_json, model=train.outputs["model"],
                               eval_report=evaluate.outputs["report"]).set_display_name("register in MLflow")
        # Registration talks to the registry and must happen on every run: never cached.
        register.set_caching_options(False)
        return register.outputs["Output"]

    return dagllm


def compile_pipeline(params: Params, output: Path = DEFAULT_OUTPUT) -> Path:
    """Compile the DAG to ``output`` (YAML)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(params), package_path=str(output))
    return output


def localize(params: Params) -> Params:
    """Make working-directory-relative settings absolute: kfp.local runs tasks elsewhere."""
    data: dict[str, Any] = params.to_dict()
    data["paths"]["mirror"] = str(resolve_mirror(params.paths.mirror).resolve())
    data["mlflow"]["tracking_uri"] = absolute_uri(params.mlflow.tracking_uri)
    data["mlflow"]["artifact_root"] = str(Path(params.mlflow.artifact_root).resolve())
    return Params.model_validate(data)


def run_local(params: Params, workdir: Path = Path("kfp_local")) -> dict[str, Any]:
    """Run the whole DAG here with ``kfp.local.SubprocessRunner`` (no container, no cluster).

    Returns the registered version and where kfp.local left the task outputs.
    """
    from kfp import local

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir), raise_on_error=True)
    task = build_pipeline(localize(params))()
    return {"registered_version": task.output, "pipeline_root": str(workdir)}
