"""The training encoding: prompt wrapper, token ids, labels masked on the prompt.

Shared by the train stage and the validation loss (:mod:`dagllm.evaluation.val_loss`), so the
held-out loss is the training objective on unseen records.

A record whose ``prompt + answer + EOS`` is longer than ``max_len`` never loses its answer:

1. the *input* is cut to the room left by the headers, the whole instruction and the answer + EOS;
2. when not one input token fits (or the record has no input), the input is emptied and the
   *instruction* is cut to the room left by the headers and the answer + EOS;
3. when the headers (``### 지시:``, ``### 입력:`` if the record has an input, ``### 응답:``) and the
   answer + EOS leave no room for one instruction token, the record is dropped (reason
   ``answer_too_long``).

A text is cut in its middle at token level: of the tokens it keeps, the first third come from its
beginning and the other two thirds from its end, joined by the marker ``" … "``. Both ends matter:
the templates put the passage first and the question or the answer choices last (``질문: ...``,
``보기: ①...``, ``4번: ...``), and a cut from the end would delete exactly the part the answer
responds to. The headers always stay
whole, so the model sees the response marker. Labels are ``IGNORE`` on the whole prompt (marker
included); the answer + EOS carry the loss. A record that fits is tokenised as one prompt string,
exactly as before; only a record that does not fit is tokenised again in pieces (headers,
instruction, input), which for the project's byte-level BPE gives the same ids as the whole prompt
(the pieces meet at pre-tokeniser boundaries) and in any case never exceeds ``max_len``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from dagllm.training.packing import IGNORE, PaddedCollator
from dagllm.training.prompt import INPUT_HEADER, INSTRUCTION_HEADER, RESPONSE_HEADER, build_prompt

__all__ = ["DROP_REASONS", "FIT", "IGNORE", "INPUT_TRUNCATED", "INSTRUCTION_TRUNCATED", "EncodingReport",
           "cut_middle", "encode_example", "encode_frame", "encode_record", "encode_records", "pad_collate", "texts_of"]

FIT, INPUT_TRUNCATED, INSTRUCTION_TRUNCATED = "fit", "input_truncated", "instruction_truncated"
ANSWER_TOO_LONG = "answer_too_long"
CUT_MARKER = " … "  # where a text was cut (in its middle)
KEPT = (FIT, INPUT_TRUNCATED, INSTRUCTION_TRUNCATED)
DROP_REASONS = (ANSWER_TOO_LONG,)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _has_input(input_text: str | None) -> bool:
    return bool(input_text and input_text.strip())


def _example(prompt_ids: list[int], answer_ids: list[int]) -> dict:
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE] * len(prompt_ids) + answer_ids}


def _fit(tokenizer, prompt_ids: list[int], answer_ids: list[int], instruction: str, input_text: str | None,
         max_len: int) -> tuple[dict | None, str]:
    """The example for already tokenised prompt and answer (+ EOS); cut the prompt when it must."""
    if len(prompt_ids) + len(answer_ids) <= max_len:
        return _example(prompt_ids, answer_ids), FIT
    return _truncated(tokenizer, instruction, input_text, answer_ids, max_len)


def _truncated(tokenizer, instruction: str, input_text: str | None, answer_ids: list[int],
               max_len: int) -> tuple[dict | None, str]:
    """Input cut first, then the instruction; ``None`` and the reason when even that cannot fit."""
    has_input = _has_input(input_text)
    head, tail = _ids(tokenizer, INSTRUCTION_HEADER), _ids(tokenizer, RESPONSE_HEADER)
    middle = _ids(tokenizer, INPUT_HEADER) if has_input else []
    room = max_len - len(answer_ids) - len(head) - len(middle) - len(tail)  # for instruction + input
    if room < 1:
        return None, ANSWER_TOO_LONG
    marker = _ids(tokenizer, CUT_MARKER)
    ins = _ids(tokenizer, instruction.strip())
    inp = _ids(tokenizer, input_text.strip()) if has_input else []
    if has_input and room > len(ins):
        kept = cut_middle(inp, room - len(ins), marker)
        outcome = INPUT_TRUNCATED if kept != inp else FIT
        return _example(head + ins + middle + kept + tail, answer_ids), outcome
    kept = cut_middle(ins, room, marker)
    outcome = INSTRUCTION_TRUNCATED if kept != ins or inp else FIT
    return _example(head + kept + middle + tail, answer_ids), outcome


def cut_middle(ids: list[int], room: int, marker: list[int]) -> list[int]:
    """``ids`` within ``room`` tokens: a third of the kept ones from the start, ``marker``, the rest from the end.

    Without room for the marker and a token on each side, the first ``room`` tokens alone.
    """
    if len(ids) <= room:
        return ids
    keep = room - len(marker)
    if keep < 2:
        return ids[:room]
    first = max(1, keep // 3)
    return ids[:first] + marker + ids[len(ids) - (keep - first):]


def encode_record(tokenizer, instruction: str, input_text: str, output: str,
                  max_len: int) -> tuple[dict | None, str]:
    """One record's token ids and labels (-100 on the prompt) within ``max_len``, and how it fitted.

    Returns:
        The example (``None`` when dropped) and its outcome: ``fit``, ``input_truncated``,
        ``instruction_truncated`` or the drop reason ``answer_too_long`` (see the module docstring).
    """
    prompt_ids = _ids(tokenizer, build_prompt(instruction, input_text))
    answer_ids = _ids(tokenizer, output) + [tokenizer.eos_token_id]
    return _fit(tokenizer, prompt_ids, answer_ids, instruction, input_text, max_len)


def encode_example(tokenizer, instruction: str, input_text: str, output: str, max_len: int) -> dict | None:
    """Token ids with labels masked (-100) on the prompt, within ``max_len``; ``None`` when dropped.

    See :func:`encode_record` for the outcome and the module docstring for how a record is cut.
    """
    return encode_record(tokenizer, instruction, input_text, output, max_len)[0]


def encode_records(df: pd.DataFrame, tokenizer, max_len: int) -> tuple[list[dict | None], list[str]]:
    """Every record of ``df`` encoded as :func:`encode_record` does, tokenised in batches.

    Returns:
        One example per row (``None`` where dropped) and one outcome per row, in ``df``'s order.
    """
    if df.empty:
        return [], []
    prompts = [build_prompt(r.instruction, r.input) for r in df.itertuples(index=False)]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(df["output"].tolist(), add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    pairs = [_fit(tokenizer, p, a + [eos], ins, inp, max_len)
             for p, a, ins, inp in zip(prompt_ids, answer_ids, df["instruction"], df["input"], strict=True)]
    return [ex for ex, _ in pairs], [outcome for _, outcome in pairs]


def encode_frame(df: pd.DataFrame, tokenizer, max_len: int) -> tuple[list[dict], EncodingReport]:
    """The kept examples of ``df`` (dropped records left out) and the per-task counts of how they fitted.

    Records are grouped by their ``task`` column (``category`` when there is none).
    """
    examples, outcomes = encode_records(df, tokenizer, max_len)
    report = EncodingReport.of(task_column(df), outcomes, max_len)
    return [ex for ex in examples if ex is not None], report


def task_column(df: pd.DataFrame) -> list[str]:
    """The task of each record: ``task``, else ``category``, else ``all``."""
    for col in ("task", "category"):
        if col in df.columns:
            return df[col].astype(str).tolist()
    return ["all"] * len(df)


@dataclass(frozen=True)
class EncodingReport:
    """How the records fitted the training window, per task.

    Attributes:
        max_len: the window (``train.max_seq_len``).
        by_task: task -> outcome (``fit``, ``input_truncated``, ``instruction_truncated`` or a drop
            reason) -> records.
    """

    max_len: int
    by_task: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, tasks: list[str], outcomes: list[str], max_len: int) -> EncodingReport:
        """Count ``outcomes`` per task (both lists in record order)."""
        counts: dict[str, Counter] = {}
        for task, outcome in zip(tasks, outcomes, strict=True):
            counts.setdefault(task, Counter())[outcome] += 1
        return cls(max_len, {t: dict(c) for t, c in sorted(counts.items())})

    @staticmethod
    def _summary(counts: dict[str, int]) -> dict:
        reasons = {r: counts.get(r, 0) for r in DROP_REASONS}
        out = {"records": sum(counts.values()), **{k: counts.get(k, 0) for k in KEPT}}
        return out | {"dropped": sum(reasons.values()), "dropped_reasons": reasons}

    def totals(self) -> dict:
        """The counts over all tasks: records, fit, input_truncated, instruction_truncated, dropped(_reasons)."""
        total: Counter = Counter()
        for counts in self.by_task.values():
            total.update(counts)
        return self._summary(dict(total))

    def to_dict(self) -> dict:
        """``max_seq_len``, the totals, and the same counts per task (for train_metrics.json)."""
        return {"max_seq_len": self.max_len, **self.totals(),
                "tasks": {t: self._summary(c) for t, c in self.by_task.items()}}

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: ``encoding.<count>`` and ``encoding.<task>.<count>``."""
        out = {}
        for prefix, summary in [("encoding", self.totals())] + [
                (f"encoding.{t}", self._summary(c)) for t, c in self.by_task.items()]:
            out |= {f"{prefix}.{k}": float(v) for k, v in summary.items() if k != "dropped_reasons"}
            out |= {f"{prefix}.dropped_{k}": float(v) for k, v in summary["dropped_reasons"].items()}
        return out

    def line(self) -> str:
        """One line for the train stage's output."""
        t = self.totals()
        return (f"{t['records']:,} records at max_seq_len {self.max_len}: {t['fit']:,} whole, "
                f"{t['input_truncated']:,} input cut, {t['instruction_truncated']:,} instruction cut, "
                f"{t['dropped']:,} dropped (answer + EOS too long)")


def texts_of(df: pd.DataFrame) -> list[str]:
    """Full prompt + response texts (what the ``tiny`` tokenizer is trained on)."""
    return [build_prompt(r.instruction, r.input) + r.output for r in df.itertuples(index=False)]


def pad_collate(tokenizer):
    """The padded collator for ``tokenizer`` (one example per row)."""
    return PaddedCollator(tokenizer.pad_token_id)
