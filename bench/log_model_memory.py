"""Peak memory and time of logging a model to MLflow: by path (dagllm) vs loaded into memory.

Usage: .venv/bin/python bench/log_model_memory.py [--hidden 768 --layers 12]

Builds a GPT-NeoX of the given shape (Polyglot-Ko vocabulary, 30,080), saves it to a temporary
folder, then logs it to a fresh SQLite store in one child process per method and reports each
child's peak resident memory (ru_maxrss) and wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
import mlflow
from dagllm.runtime import offline
from dagllm.registry.versions import INPUT_EXAMPLE, PIP_REQUIREMENTS, log_model_by_path
offline()
method, model_dir, store = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
exp = mlflow.create_experiment("bench", artifact_location=Path(store, "artifacts").as_uri())
run_id = mlflow.start_run(experiment_id=exp).info.run_id
mlflow.end_run()
start = time.perf_counter()
if method == "path":
    log_model_by_path(model_dir, run_id)
else:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    components = {"model": AutoModelForCausalLM.from_pretrained(model_dir),
                  "tokenizer": AutoTokenizer.from_pretrained(model_dir)}
    with mlflow.start_run(run_id=run_id):
        mlflow.transformers.log_model(transformers_model=components, name="model", task="text-generation",
            signature=ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")])),
            input_example=INPUT_EXAMPLE, pip_requirements=PIP_REQUIREMENTS)
import resource
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def build(dest: Path, hidden: int, layers: int) -> int:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from dagllm.training.presets import train_tokenizer

    tok = train_tokenizer(["안녕하세요 반갑습니다 오늘 날씨가 좋네요"] * 50, 300)
    config = GPTNeoXConfig(vocab_size=30080, hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                           rotary_pct=0.25, tie_word_embeddings=False)
    model = GPTNeoXForCausalLM(config)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return sum(p.numel() for p in model.parameters())


def measure(method: str, model_dir: Path, work: Path) -> dict:
    """Log the model in a fresh child process; its own peak RSS and the logging time."""
    store = work / method
    store.mkdir()
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, method, str(model_dir), str(store)], check=True,
                         capture_output=True, text=True).stdout
    child = json.loads(out.strip().splitlines()[-1])
    return {"method": method, "peak_rss_mib": round(child["peak_kib"] / 1024), "log_seconds": round(child["seconds"], 1),
            "process_seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n = build(work / "model", args.hidden, args.layers)
        size = sum(f.stat().st_size for f in (work / "model").iterdir()) / 2**20
        print(f"model: {n / 1e6:.1f} M parameters, {size:.0f} MiB on disk")
        for method in ("path", "memory"):
            print(json.dumps(measure(method, work / "model", work)))


if __name__ == "__main__":
    main()
