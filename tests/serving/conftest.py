"""Fixtures for the serving tests: a tiny Korean chat model registered in a real MLflow store, and
``dagllm serve``'s app running under uvicorn on a loopback port.

The model is a GPT-NeoX built from config with a tokenizer trained on a few Korean question and
answer pairs (written for these tests), trained until it answers them, then registered with the
project's own register stage, so the server loads it as ``models:/dagllm-ko@champion``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dagllm.params import MlflowParams, RegisterParams, ServeParams, TrainParams
from dagllm.serving.engine import Turn, history_transcript
from dagllm.training.prompt import build_prompt

QA = [
    ("한국의 수도는 어디인가요?", "한국의 수도는 서울입니다."),
    ("안녕하세요?", "안녕하세요! 무엇을 도와드릴까요?"),
    ("김치는 무엇으로 만드나요?", "김치는 배추와 고춧가루로 만듭니다."),
    ("일주일은 며칠인가요?", "일주일은 칠 일입니다."),
    ("가장 높은 산은 어디인가요?", "한국에서 가장 높은 산은 한라산입니다."),
    ("오늘 기분이 어때요?", "저는 언제나 좋습니다."),
]


@dataclass
class Registered:
    """A model version in a SQLite MLflow store under ``root``."""

    root: Path
    mlflow: MlflowParams
    model_dir: Path
    version: str


def _train_tiny_chat_model(model_dir: Path) -> None:
    import torch

    from dagllm.training.encoding import encode_example, pad_collate
    from dagllm.training.presets import build_tiny_model as build_model
    from dagllm.training.presets import train_tokenizer

    torch.manual_seed(0)
    # each question alone, and each question after the previous turn (as the page sends history)
    records = [(q, "", a) for q, a in QA] + [
        (q, history_transcript([Turn("user", pq), Turn("assistant", pa)]), a)
        for (pq, pa), (q, a) in zip(QA[:-1], QA[1:], strict=True)]
    tok = train_tokenizer([build_prompt(q, i) + a for q, i, a in records] * 3, 400)
    params = TrainParams(max_seq_len=128, tiny={"hidden_size": 64, "num_heads": 4, "intermediate_size": 128,
                                                "vocab_size": 400})
    model = build_model(params, tok)
    batch = pad_collate(tok)([encode_example(tok, q, i, a, 128) for q, i, a in records])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(80):  # full batch until the answers are memorised (loss well under 0.1)
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 0.2, loss.item()
    model.eval().save_pretrained(model_dir)
    tok.save_pretrained(model_dir)


@pytest.fixture(scope="session")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread while the serving tests run: on a shared 2-core machine two spinning
    OpenMP threads per process made the tiny model's training ten times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def registered(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Registered:
    """The tiny chat model, registered as ``dagllm-ko`` version 1 with the champion alias."""
    import mlflow

    from dagllm.io import write_json
    from dagllm.registry.tracking import configure
    from dagllm.stages.register import run_register

    root = tmp_path_factory.mktemp("serve")
    model_dir = root / "models" / "final"
    _train_tiny_chat_model(model_dir)
    mlp = MlflowParams(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_root=str(root / "mlartifacts"))
    experiment = configure(mlp)
    with mlflow.start_run(experiment_id=experiment, run_name="train") as run:  # the training run of record
        mlflow.log_param("note", "tiny chat model for the serving tests")
    write_json(root / "train_run.json", {"run_id": run.info.run_id})
    write_json(root / "metrics.json", {"metrics": {"kobest_copa": {"acc": 0.6}}})
    policy = Path(__file__).resolve().parents[2] / "mlflow" / "promotion_policy.yaml"
    summary = run_register(RegisterParams(policy=str(policy)), mlp, model_dir, root / "train_run.json",
                           root / "metrics.json", root / "register.json", params_digest="serving-tests")
    assert "champion" in summary.aliases
    return Registered(root, mlp, model_dir, summary.version)


@pytest.fixture(scope="session")
def loaded(registered: Registered):
    from dagllm.serving.model import load_model

    return load_model("models:/dagllm-ko@champion", registered.mlflow)


def serve_params(**overrides) -> ServeParams:
    """Test settings: greedy by default so answers are repeatable."""
    base = {"default_temperature": 0.0, "default_max_new_tokens": 32, "queue_size": 64}
    return ServeParams(**{**base, **overrides})


@pytest.fixture(scope="session")
def server(loaded) -> Iterator:
    """The app with roomy limits (the load test sends 50 requests at once)."""
    from dagllm.serving.api import BackgroundServer, create_app

    params = serve_params()
    with BackgroundServer(create_app(loaded, params), params) as s:
        yield s


@pytest.fixture(scope="session")
def tight_server(loaded) -> Iterator:
    """The app with small limits: one queue slot, tiny bodies, a generation time limit of 1 ms."""
    from dagllm.serving.api import BackgroundServer, create_app

    params = serve_params(queue_size=1, max_request_bytes=1024, max_message_chars=200, max_history_turns=2,
                          max_new_tokens_limit=64, generation_timeout_s=0.001)
    with BackgroundServer(create_app(loaded, params), params) as s:
        yield s
