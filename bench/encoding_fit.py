"""How the training encoding fits the demo's records into 256 tokens (docs/benchmarks.md, issue 24).

Run after ``make demo``: ``python bench/encoding_fit.py new`` encodes data/balanced/train.parquet with
the current encoding (the whole answer kept); ``python bench/encoding_fit.py old FILE`` with an older
``encoding.py`` (``git show 2bb9af4:src/dagllm/training/encoding.py > FILE``, which cut from the end).
Prints the records encoded and how many carry no loss at all.
"""

from __future__ import annotations

import importlib.util
import sys

import pandas as pd
from transformers import AutoTokenizer

MAX_LEN = 256  # the demo's train.max_seq_len


def _no_loss(examples: list[dict]) -> int:
    return sum(all(label == -100 for label in e["labels"]) for e in examples)


def main(argv: list[str]) -> None:
    tokenizer = AutoTokenizer.from_pretrained("models/final")
    df = pd.read_parquet("data/balanced/train.parquet")
    if argv[0] == "old":
        spec = importlib.util.spec_from_file_location("encoding_old", argv[1])
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
        examples = old.encode_frame(df, tokenizer, MAX_LEN)
        print("records", len(examples), "no_loss", _no_loss(examples))
    else:
        from dagllm.training.encoding import encode_frame

        examples, report = encode_frame(df, tokenizer, MAX_LEN)
        print("records", len(examples), "no_loss", _no_loss(examples), report.totals())


if __name__ == "__main__":
    main(sys.argv[1:])
