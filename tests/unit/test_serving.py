"""Serving pieces without a server: model URIs, prompt fitting, the bounded queue, serve params."""

from __future__ import annotations

import pytest

from dagllm.params import ParamsError, ServeParams, load_params
from dagllm.serving.engine import ModelWorker, PromptTooLong, QueueFull, Turn, chat_prompt, fit_prompt
from dagllm.serving.model import ModelLoadError, parse_model_uri
from dagllm.training.presets import train_tokenizer
from dagllm.training.prompt import build_prompt

from ..conftest import REPO


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer([build_prompt("질문에 답하세요.", "사용자: 안녕\n모델: 네") + "서울입니다"] * 20, 300)


def test_registry_and_local_uris(tmp_path):
    assert parse_model_uri("models:/dagllm-ko@champion").alias == "champion"
    ref = parse_model_uri("models:/dagllm-ko/7")
    assert (ref.name, ref.version, ref.alias) == ("dagllm-ko", "7", None)
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "config.json").write_text("{}")
    assert parse_model_uri(str(tmp_path / "final")).local_dir == tmp_path / "final"
    for bad in ("models:/dagllm-ko", "models:/a/b/c", "models:/x@"):
        with pytest.raises(ModelLoadError, match="expected models:/NAME@ALIAS"):
            parse_model_uri(bad)
    with pytest.raises(ModelLoadError, match="no config.json"):
        parse_model_uri(str(tmp_path))


def test_history_is_a_transcript_in_the_input_section():
    prompt = chat_prompt("다음 질문은?", [Turn("user", "안녕"), Turn("assistant", "네, 안녕하세요"), Turn("user", " ")])
    assert prompt == build_prompt("다음 질문은?", "사용자: 안녕\n모델: 네, 안녕하세요")
    assert chat_prompt("질문") == build_prompt("질문")


def test_fit_prompt_drops_oldest_turns_then_shortens_the_answer(tok):
    history = [Turn("user", "아주 긴 이야기 " * 30), Turn("assistant", "짧은 답")]
    alone = len(tok(chat_prompt("질문에 답하세요."), add_special_tokens=False)["input_ids"])
    fitted = fit_prompt(tok, "질문에 답하세요.", history, 16, alone + 40)
    assert fitted.dropped_turns == 1 and fitted.max_new_tokens == 16
    assert fitted.input_ids == tok(chat_prompt("질문에 답하세요.", history[1:]), add_special_tokens=False)["input_ids"]
    short = fit_prompt(tok, "질문에 답하세요.", [], 100, alone + 5)
    assert short.max_new_tokens == 5 and short.dropped_turns == 0
    with pytest.raises(PromptTooLong, match="shorten the message"):
        fit_prompt(tok, "질문에 답하세요.", [], 10, alone)


class _Nothing:
    def run(self, loaded) -> None:
        pass


def test_queue_refuses_when_full():
    worker = ModelWorker(loaded=None, queue_size=2)  # not started: nothing leaves the queue
    assert worker.submit(_Nothing()) == 0 and worker.submit(_Nothing()) == 1
    with pytest.raises(QueueFull, match="2 requests are already waiting"):
        worker.submit(_Nothing())
    worker.start()
    worker.stop()
    assert not worker.alive


def test_serve_params_in_repo_and_bounds():
    p = load_params(REPO / "params.yaml").serve
    assert p.model_uri == "models:/dagllm-ko@champion" and p.host == "127.0.0.1"
    with pytest.raises(ValueError, match="default_max_new_tokens must not exceed"):
        ServeParams(default_max_new_tokens=600, max_new_tokens_limit=512)
    with pytest.raises(ParamsError, match="serve.top_p.*unknown key"):
        load_params(REPO / "params.yaml", ["serve.top_p=0.5"])
