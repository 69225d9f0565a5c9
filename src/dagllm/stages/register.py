"""Register: log the trained model with the MLflow transformers flavour and register a version.

The new version gets the alias ``challenger``; it also becomes ``champion`` when there is none
yet or when its configured metric is not worse than the champion's. Registering the same
training run twice returns the existing version instead of creating another.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dagllm.io import read_json, write_json
from dagllm.params import MlflowParams, RegisterParams

PIP_REQUIREMENTS = ["torch==2.13.0", "transformers>=5,<6", "tokenizers", "safetensors"]


@dataclass
class RegisterSummary:
    model_name: str
    version: str
    aliases: list[str]
    metric: str
    value: float | None
    champion_value: float | None
    decision: str
    tracking_uri: str

    def to_dict(self) -> dict:
        return self.__dict__

    def lines(self) -> list[str]:
        return [f"{self.model_name} version {self.version} -> aliases {', '.join(self.aliases)} ({self.decision})"]


def metric_value(metrics: dict, dotted: str) -> float | None:
    """``kobest_copa.acc`` -> metrics['metrics']['kobest_copa']['acc'] (None when absent)."""
    task, _, name = dotted.partition(".")
    return metrics.get("metrics", {}).get(task, {}).get(name)


def decide(new: float | None, champion: float | None, has_champion: bool, higher_is_better: bool) -> tuple[bool, str]:
    """Whether the new version becomes champion, and why."""
    if not has_champion:
        return True, "no champion yet"
    if new is None:
        return False, "the new version has no value for the metric"
    if champion is None:
        return True, "the champion has no value for the metric"
    better = new >= champion if higher_is_better else new <= champion
    op = (">=" if better else "<") if higher_is_better else ("<=" if better else ">")
    return better, f"{new:.4f} {op} champion {champion:.4f}"


def run_register(params: RegisterParams, mlflow_params: MlflowParams, model_dir: Path, run_file: Path,
                 eval_metrics: Path, report_path: Path) -> RegisterSummary:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from dagllm.tracking import configure

    configure(mlflow_params)
    client = MlflowClient()
    run_id = read_json(run_file)["run_id"]
    try:
        client.get_run(run_id)
    except MlflowException:
        raise ValueError(
            f"training run {run_id} (from {run_file}) is not in the tracking store {mlflow.get_tracking_uri()}; "
            "the store was reset or params.mlflow changed: train again (`dagllm train` or `dvc repro -f train`)"
        ) from None
    metrics = read_json(eval_metrics)
    value = metric_value(metrics, params.metric)
    try:
        client.get_registered_model(params.model_name)
    except MlflowException:
        client.create_registered_model(params.model_name, description="Korean instruction-tuned GPT-NeoX (dagllm)")
    existing = client.search_model_versions(f"name='{params.model_name}' and run_id='{run_id}'")
    if existing:
        version = existing[0]
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # MLflow 3.17 cannot log a transformers-5 checkpoint by path (its task lookup breaks),
        # so the components are loaded and logged as a dict.
        components = {"model": AutoModelForCausalLM.from_pretrained(model_dir),
                      "tokenizer": AutoTokenizer.from_pretrained(model_dir)}
        with mlflow.start_run(run_id=run_id):
            info = mlflow.transformers.log_model(
                transformers_model=components, name="model", task="text-generation",
                pip_requirements=PIP_REQUIREMENTS, input_example="### 지시:\n안녕하세요?\n\n### 응답:\n",
            )
        version = mlflow.register_model(info.model_uri, params.model_name, tags={"run_id": run_id})
        for task, ms in metrics.get("metrics", {}).items():
            for name, v in ms.items():
                client.set_model_version_tag(params.model_name, version.version, f"metric.{task}.{name}", str(v))
    client.set_registered_model_alias(params.model_name, "challenger", version.version)
    try:
        champ = client.get_model_version_by_alias(params.model_name, "champion")
    except MlflowException:
        champ = None
    champ_value = None
    if champ is not None and str(champ.version) != str(version.version):
        raw = champ.tags.get(f"metric.{params.metric}")
        champ_value = float(raw) if raw is not None else None
        promote, why = decide(value, champ_value, True, params.higher_is_better)
    elif champ is not None:
        promote, why = True, "already champion"
    else:
        promote, why = decide(value, None, False, params.higher_is_better)
    if promote:
        client.set_registered_model_alias(params.model_name, "champion", version.version)
    aliases = sorted(client.get_model_version(params.model_name, version.version).aliases)
    summary = RegisterSummary(params.model_name, str(version.version), aliases, params.metric, value,
                              champ_value, f"{'promoted' if promote else 'kept champion'}: {why}",
                              mlflow_params.tracking_uri)
    write_json(report_path, summary.to_dict())
    return summary
