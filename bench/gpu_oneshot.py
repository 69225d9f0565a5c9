"""The one-shot GPU run: install the carried wheels, then every GPU check, each with its own timeout.

On the lent GPU machine (Python 3.12, torch 2.11 + CUDA 13, transformers 5.17, no network), from
the repository root, with the wheelhouse of ``bench/wheelhouse.sh`` carried in ``.whl/``::

    python3 bench/gpu_oneshot.py --install .whl --out $OUT          # about 8 minutes in all

and its CPU twin (tiny model, seconds-long steps; CI runs it through tests/integration)::

    .venv/bin/python bench/gpu_oneshot.py --dry-run --out /tmp/oneshot

Steps (each a child process with a timeout; a failed or timed-out step is recorded, the next runs):

a. ``mfu_1.3b``: bench/gpu_mfu.py on the Polyglot-Ko-1.3b shape, bf16, seq 2048: packed
   (flex_attention) against the HF padded baseline, same real tokens per step, DeepSpeed ZeRO-2 as
   the train stage;
b. ``fit_5.8b``: the Polyglot-Ko-5.8b shape on the one GPU (ZeRO-2, gradient checkpointing, packed):
   MFU and peak memory, or the out-of-memory error with the estimated need;
c. ``train`` then ``evaluate``: 30 steps of ``dagllm train`` on a random-initialised 1.3b shape
   (samples bundled with dagllm, fetched and ingested by the real stages), then ``dagllm evaluate``
   on the GPU with a limit;
d. ``oneshot.json`` in ``--out``: GPU name, versions, each step's figures, return code and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "dagllm" / "data" / "catalog" / "samples"
BUDGET_S = 540  # 9 minutes for everything


def steps(dry: bool, out: Path, work: Path) -> list[tuple[str, list[str], int, Path | None]]:
    """(name, command, timeout in seconds, JSON it writes) of every step."""
    py = sys.executable
    mfu = [py, str(REPO / "bench" / "gpu_mfu.py")]
    if dry:
        small = ["--shape", "tiny", "--seq", "128", "--steps", "2", "--warmup", "1", "--records", "200"]
        return [
            ("mfu_1.3b", mfu + small + ["--json", str(out / "mfu_13b.json")], 240, out / "mfu_13b.json"),
            ("fit_5.8b", mfu + small + ["--variants", "packed", "--gradient-checkpointing", "--json",
                                        str(out / "fit_58b.json")], 240, out / "fit_58b.json"),
            *train_eval(dry, work, 300),
        ]
    return [
        ("mfu_1.3b", mfu + ["--shape", "polyglot-ko-1.3b", "--seq", "2048", "--rows", "4", "--steps", "8",
                            "--warmup", "3", "--json", str(out / "mfu_13b.json")], 170, out / "mfu_13b.json"),
        ("fit_5.8b", mfu + ["--shape", "polyglot-ko-5.8b", "--seq", "2048", "--rows", "2", "--steps", "3",
                            "--warmup", "2", "--variants", "packed", "--gradient-checkpointing", "--json",
                            str(out / "fit_58b.json")], 120, out / "fit_58b.json"),
        *train_eval(dry, work, 120),
    ]


def train_eval(dry: bool, work: Path, timeout: int) -> list[tuple[str, list[str], int, Path | None]]:
    """fetch + ingest the bundled samples, train 30 steps, evaluate with a limit (``dagllm`` commands)."""
    dagllm = [sys.executable, "-c", "from dagllm.cli import app; app()"]
    model = (["train.model=tiny", "train.max_steps=3", "train.batch_size=2"] if dry else
             ["train.model=polyglot-ko-1.3b", f"train.model_path={work / 'init-1.3b'}", "train.max_steps=30",
              "train.batch_size=4"])
    train = dagllm + ["train", "train.save_every=0", "train.log_every=5", *model]
    evaluate = dagllm + ["evaluate", "evaluate.limit=8" if dry else "evaluate.limit=100",
                         f"evaluate.device={'cpu' if dry else 'cuda'}", "evaluate.validation_loss=false"]
    prepare = [sys.executable, str(Path(__file__).resolve()), "--prepare", str(work)] + (["--dry-run"] if dry else [])
    return [("prepare", prepare, 60 if not dry else 120, None),
            ("train", train, timeout, work / "reports" / "train_metrics.json"),
            ("evaluate", evaluate, 70 if not dry else 240, work / "reports" / "eval" / "metrics.json")]


def prepare(work: Path, dry: bool) -> None:
    """The work directory: params.yaml on the bundled samples, fetched, ingested and gated benchmark records,
    synthetic balanced training records, and (GPU) a random-initialised 1.3b-shaped model folder."""
    import yaml

    sys.path.insert(0, str(REPO / "bench"))
    from gpu_mfu import synthetic_records

    work.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["paths"]["mirror"] = str(SAMPLES)
    params["register"]["policy"] = str(REPO / params["register"]["policy"])
    params["train"]["tiny"].update(hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=500)
    params["evaluate"]["batch_size"] = 8
    params["validate"]["min_records_per_task"] = 1  # the bundled samples hold a few rows per task
    (work / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    dagllm = [sys.executable, "-c", "from dagllm.cli import app; app()"]
    for stage in ("fetch", "ingest", "render", "validate"):  # evaluate reads the gate's canonical table
        subprocess.run(dagllm + [stage], cwd=work, check=True)
    df = synthetic_records(400 if dry else 3000, seed=1)
    df["task"] = "synthetic"
    df["category"] = "text_generation"
    (work / "data" / "balanced").mkdir(parents=True, exist_ok=True)
    from dagllm.params import load_params
    from dagllm.paths import Layout

    lay = Layout.from_params(load_params(work / "params.yaml", []).paths)
    df.to_parquet(work / lay.train_split)
    if not dry:
        _init_13b(work / "init-1.3b", df)


def _init_13b(where: Path, df) -> None:
    """A random-initialised Polyglot-Ko-1.3b shape with a tokenizer trained on the records (bf16 files)."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from dagllm.training.encoding import texts_of
    from dagllm.training.presets import presets, train_tokenizer

    p = presets()["polyglot-ko-1.3b"]
    tok = train_tokenizer(texts_of(df), 30000)
    cfg = GPTNeoXConfig(vocab_size=p.vocab_size, hidden_size=p.hidden_size, num_hidden_layers=p.num_hidden_layers,
                        num_attention_heads=p.num_attention_heads, intermediate_size=p.intermediate_size,
                        max_position_embeddings=p.max_seq_len, rotary_pct=p.rotary_pct, use_parallel_residual=True,
                        tie_word_embeddings=False, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id)
    GPTNeoXForCausalLM(cfg).to(torch.bfloat16).save_pretrained(where)
    tok.save_pretrained(where)


def install(wheels: Path, target: Path) -> dict:
    """pip-install the carried wheels into ``target`` (no index, no dependencies resolved)."""
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    if not files:
        raise SystemExit(f"{wheels}: no wheels; build them with bench/wheelhouse.sh")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", str(target), *files], check=True)
    # dagllm itself runs from src/ (PYTHONPATH): nothing to build there
    return {"wheels": len(files)}


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "accelerate", "deepspeed", "mlflow", "lm_eval", "pydantic"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    try:
        import torch

        out["cuda"] = torch.version.cuda
        out["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:
        out["gpu"] = None
    return out


def run_all(dry: bool, out: Path, work: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    result: dict = {"dry_run": dry, "versions": versions(), "steps": {}}
    start = time.monotonic()
    for name, cmd, timeout, produced in steps(dry, out, work):
        left = BUDGET_S - (time.monotonic() - start)
        if not dry and left < 30:
            result["steps"][name] = {"skipped": "out of the 9-minute budget"}
            continue
        t0 = time.monotonic()
        log = out / "logs.txt"
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"\n===== {name}: {' '.join(cmd)}\n")
            fh.flush()
            try:
                rc = subprocess.run(cmd, cwd=work if name in ("train", "evaluate") else REPO, env=env, stdout=fh,
                                    stderr=subprocess.STDOUT, timeout=timeout if dry else min(timeout, left)).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        step = {"rc": rc, "seconds": round(time.monotonic() - t0, 1)}
        if produced is not None and produced.is_file():
            step["result"] = json.loads(produced.read_text(encoding="utf-8"))
        result["steps"][name] = step
        print(f"{name}: rc={rc} in {step['seconds']} s", flush=True)
        (out / "oneshot.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    result["total_seconds"] = round(time.monotonic() - start, 1)
    (out / "oneshot.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The one-shot GPU run (or its CPU dry run with the tiny model).")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model, a few steps each (what CI runs)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "oneshot-out")))
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: OUT/../oneshot-work)")
    ap.add_argument("--install", type=Path, default=None, help="wheelhouse to install first (the GPU machine)")
    ap.add_argument("--prepare", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.prepare:
        prepare(a.prepare, a.dry_run)
        return 0
    if a.install:
        target = Path("/tmp/dagllm-site")
        install(a.install, target)
        os.environ["PYTHONPATH"] = os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])
        sys.path.insert(0, str(target))
    work = a.work or a.out.resolve().parent / "oneshot-work"
    result = run_all(a.dry_run, a.out.resolve(), work.resolve())
    failed = [n for n, s in result["steps"].items() if s.get("rc") != 0]
    print(json.dumps({"failed": failed, "total_seconds": result["total_seconds"]}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
