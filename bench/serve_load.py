"""Load benchmark for `dagllm serve`: one request at a time (baseline), then a burst at once.

Loads serve.model_uri (from params.yaml plus key=value overrides), serves it with the same app
and uvicorn settings as `dagllm serve`, on a loopback port, and sends streaming chat requests.
Prints latency p50/p95/p99 for both phases and their ratio; `--json` writes the numbers.

    .venv/bin/python bench/serve_load.py --requests 200 --concurrency 50 serve.model_uri=models:/dagllm-ko@champion
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from dagllm.params import load_params
from dagllm.runtime import offline
from dagllm.serving.api import BackgroundServer, create_app
from dagllm.serving.loadtest import run_load
from dagllm.serving.model import load_model

QUESTIONS = ["한국의 수도는 어디인가요?", "다음 문장의 감정을 분류하세요: 정말 재미있는 영화였다",
             "김치는 어떻게 만드나요?", "오늘 날씨가 어떤가요?", "이 리뷰가 긍정인지 부정인지 답하세요."]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--requests", type=int, default=200, help="requests in the burst phase")
    ap.add_argument("--concurrency", type=int, default=50, help="requests in flight at once in the burst")
    ap.add_argument("--baseline", type=int, default=20, help="requests sent one at a time first")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--timeout", type=float, default=300, help="seconds allowed per request")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    ap.add_argument("overrides", nargs="*", help="params overrides, e.g. serve.model_uri=models/final")
    args = ap.parse_args(argv)
    if not 1 <= args.concurrency <= 256 or not 1 <= args.requests <= 10_000:
        ap.error("--concurrency must be 1..256 and --requests 1..10000 (a bounded test)")

    offline()
    p = load_params(args.params, args.overrides)
    # the queue must hold the whole burst: this measures waiting, not refusals
    serve = p.serve.model_copy(update={"queue_size": max(p.serve.queue_size, args.concurrency)})
    loaded = load_model(serve.model_uri, p.mlflow, serve.device)

    def bodies(n: int) -> list[dict]:
        return [{"message": QUESTIONS[i % len(QUESTIONS)], "max_new_tokens": args.max_new_tokens,
                 "temperature": args.temperature} for i in range(n)]

    with BackgroundServer(create_app(loaded, serve), serve) as server:
        run_load(server.url, bodies(3), 1, args.timeout)  # warm-up, not counted
        base = run_load(server.url, bodies(args.baseline), 1, args.timeout)
        burst = run_load(server.url, bodies(args.requests), args.concurrency, args.timeout)
    result = {"model": loaded.info.to_dict(), "machine": f"{platform.machine()} {platform.processor()}".strip(),
              "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
              "baseline": base.to_dict(), "burst": burst.to_dict()}
    b, c = base.to_dict()["latency_s"], burst.to_dict()["latency_s"]
    print(f"model {loaded.info.name} version {loaded.info.version}; max_new_tokens {args.max_new_tokens}")
    print("baseline (one at a time): " + " | ".join(base.lines()))
    print(f"burst ({args.concurrency} at once): " + " | ".join(burst.lines()))
    print(f"burst/baseline latency: p50 {c['p50'] / b['p50']:.1f}x, p95 {c['p95'] / b['p95']:.1f}x, "
          f"p99 {c['p99'] / b['p99']:.1f}x; throughput {burst.to_dict()['tokens_per_s'] / base.to_dict()['tokens_per_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if not burst.errors and not base.errors else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
