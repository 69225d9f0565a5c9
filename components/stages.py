"""Thin KFP v2 components, one per stage: typed artifacts in and out, bodies that call dagllm.

Each body gets its stage's slice of the pipeline's params as ``params_json`` (from
``fingerprint_op``; :func:`dagllm.pipeline.slices.fingerprint`), parses it and calls the stage function
with artifact paths. They run as lightweight Python components in the project
image (``BASE_IMAGE``), which has dagllm installed; under ``kfp.local.SubprocessRunner`` they run
in the current environment. Directory artifacts (``Dataset``/``Model`` whose path is a folder)
carry the stage's files together with its report.
"""


from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from dagllm.params import ImagesParams

# The project image: the CPU image built from components/Dockerfile. Its one source is
# `kubeflow.images` in params.yaml: the compiler sets every task's image from there
# (pipelines/dagllm_pipeline.py); this default only names it at decoration time, and a test
# checks that it equals params.yaml. `install_kfp_package=False`: the images carry kfp from
# requirements.lock, so a pod never pip-installs at start (clusters often have no egress).
BASE_IMAGE = ImagesParams().cpu


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def fingerprint_op(params_json: str) -> NamedTuple("Slices", ingest=str, render=str, validate=str, decontaminate=str,
                                                   balance=str, train=str, evaluate=str, register=str):
    """Never cached: each stage's params slice, with the code and source-content digests (what the
    cached stages key on, so an unchanged scheduled run is all cache hits)."""
    from collections import namedtuple

    from dagllm.pipeline.slices import STAGE_SECTIONS, fingerprint

    slices = fingerprint(params_json)
    return namedtuple("Slices", list(STAGE_SECTIONS))(**slices)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ingest_op(params_json: str, canonical: Output[Dataset], metrics: Output[Metrics]):
    """Raw source files -> canonical Parquet table (+ quarantine and report)."""
    from pathlib import Path

    from dagllm.pipeline.steps import ingest

    ingest(params_json, Path(canonical.path), metrics)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def render_op(params_json: str, canonical: Input[Dataset], rendered: Output[Dataset], metrics: Output[Metrics]):
    """Canonical rows -> instruction records through the Korean templates."""
    from pathlib import Path

    from dagllm.pipeline.steps import render

    render(params_json, Path(canonical.path), Path(rendered.path), metrics)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate_op(params_json: str, canonical: Input[Dataset], rendered: Input[Dataset], validated: Output[Dataset],
                data_docs: Output[HTML], report: Output[Artifact], metrics: Output[Metrics]):
    """Quality gate on the canonical table and rendered records; quarantines bad rows, fails the
    run when a suite fails."""
    from pathlib import Path

    from dagllm.pipeline.steps import validate

    validate(params_json, Path(canonical.path), Path(rendered.path), Path(validated.path), Path(data_docs.path),
             Path(report.path), metrics)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def decontaminate_op(params_json: str, validated: Input[Dataset], canonical: Input[Dataset],
                     decontaminated: Output[Dataset], metrics: Output[Metrics]):
    """Drop records overlapping a benchmark item (character n-grams)."""
    from pathlib import Path

    from dagllm.pipeline.steps import decontaminate

    decontaminate(params_json, Path(validated.path), Path(canonical.path), Path(decontaminated.path), metrics)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def balance_op(params_json: str, records: Input[Dataset], train: Output[Dataset], validation: Output[Dataset],
               data_docs: Output[HTML], metrics: Output[Metrics]):
    """Dedup, seeded mixing policy, stratified split and the balanced point of the gate."""
    from pathlib import Path

    from dagllm.pipeline.steps import balance

    balance(params_json, Path(records.path), Path(train.path), Path(validation.path), Path(data_docs.path), metrics)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train_op(params_json: str, train: Input[Dataset], model: Output[Model], metrics: Output[Metrics]):
    """Fine-tune the model; the MLflow run id travels inside the model folder."""
    from pathlib import Path

    from dagllm.pipeline.steps import train as run

    run(params_json, Path(train.path), Path(model.path), metrics)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate_op(params_json: str, canonical: Input[Dataset], model: Input[Model], validation: Input[Dataset],
                report: Output[Artifact], metrics: Output[Metrics], eval_table: Output[Markdown],
                eval_chart: Output[HTML], confusion: Output[ClassificationMetrics]):
    """lm-evaluation-harness on the benchmark splits, validation loss per category; the eval table as
    Markdown, the chart as HTML, a confusion matrix."""
    from pathlib import Path

    from dagllm.pipeline.steps import evaluate

    evaluate(params_json, Path(canonical.path), Path(model.path), Path(validation.path), Path(report.path), metrics,
             Path(eval_table.path), Path(eval_chart.path), confusion)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register_op(params_json: str, model: Input[Model], eval_report: Input[Artifact], report: Output[Artifact],
                metrics: Output[Metrics]) -> str:
    """Register the model in MLflow and apply the champion rule; returns the version."""
    from pathlib import Path

    from dagllm.pipeline.steps import register

    return register(params_json, Path(model.path), Path(eval_report.path), Path(report.path), metrics)
