"""The KIT-19 protocol's prompts: what the ``polyglot`` branch of lm-evaluation-harness built.

Each ``doc_to_text`` is the branch's context, character for character (trailing spaces included);
lm-eval adds ``target_delimiter`` (" ") before each choice, so every continuation is " " + choice.
The documents are the Hugging Face loaders' rows (:mod:`dagllm.evaluation.documents`): their
fields are used as they are, never stripped. The task YAMLs name these with ``!function kit19_utils.NAME``.
"""

from __future__ import annotations

from lm_eval.utils import general_detokenize

from dagllm.evaluation import metrics

# COPA: the connector follows the premise by question type (원인 = cause, 결과 = effect)
CONNECTORS = {"원인": "왜냐하면", "결과": "그래서"}
# KLUE YNAT: the branch's shortened topic names, in KLUE's label order (IT과학, 경제, 사회, 생활문화, ...)
YNAT_CHOICES = ["과학", "경제", "사회", "생활", "세계", "스포츠", "정치"]


def boolq_doc_to_text(doc: dict) -> str:
    """``{paragraph} 질문: {question} 답변: `` (the trailing space is the protocol's)."""
    return f"{doc['paragraph']} 질문: {doc['question']} 답변: "


def copa_doc_to_text(doc: dict) -> str:
    """``{premise} 왜냐하면`` for 원인, ``{premise} 그래서`` for 결과."""
    return f"{doc['premise']} {CONNECTORS[doc['question'].strip()]}"


def copa_doc_to_choice(doc: dict) -> list[str]:
    """The two alternatives in label order."""
    return [doc["alternative_1"], doc["alternative_2"]]


def hellaswag_doc_to_text(doc: dict) -> str:
    """``문장: {context}``."""
    return f"문장: {doc['context']}"


def hellaswag_doc_to_choice(doc: dict) -> list[str]:
    """The four endings in label order."""
    return [doc[f"ending_{i}"] for i in range(1, 5)]


def sentineg_doc_to_text(doc: dict) -> str:
    """``문장: {sentence} 긍부정:``."""
    return f"문장: {doc['sentence']} 긍부정:"


def wic_doc_to_text(doc: dict) -> str:
    """``문장1: {context_1} 문장2: {context_2} 두 문장에서 {word}가 같은 뜻으로 쓰였나?`` (brackets kept)."""
    return f"문장1: {doc['context_1']} 문장2: {doc['context_2']} 두 문장에서 {doc['word']}가 같은 뜻으로 쓰였나?"


def sts_doc_to_text(doc: dict) -> str:
    """The STS question, both sentences through lm-eval's ``general_detokenize``."""
    s1, s2 = general_detokenize(doc["sentence1"]), general_detokenize(doc["sentence2"])
    return f"질문: 문장 1과 문장 2는 서로 유사한 의미를 가지나요?\n문장 1: {s1}\n문장 2: {s2}\n정답:"


def ynat_doc_to_text(doc: dict) -> str:
    """The title alone."""
    return f"{doc['title']}"


# The F1 aggregations the task YAMLs name (``!function kit19_utils.macro_f1``): one code for every protocol.
macro_f1 = metrics.macro_f1_of_pairs
binary_f1 = metrics.binary_f1_of_pairs
