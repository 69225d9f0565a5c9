"""A second process for the race tests: waits for a start signal, then registers or promotes.

Run as ``python tests/integration/registry_worker.py JOB.json``; the job names the store, the
start file (all workers begin together, after their slow imports) and the work.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    from mlflow import MlflowClient

    from dagllm.params import MlflowParams, RegisterParams
    from dagllm.registry.aliases import decide_and_apply
    from dagllm.registry.lock import registry_lock
    from dagllm.registry.policy import load_policy
    from dagllm.registry.tracking import configure
    from dagllm.stages.register import run_register

    store = MlflowParams(**job["mlflow"])
    register = RegisterParams(**job["register"])
    configure(store)
    client = MlflowClient()
    Path(job["ready_file"]).touch()
    while not Path(job["start_file"]).exists():
        time.sleep(0.01)
    for step in job["steps"]:
        if step["kind"] == "register":
            d = Path(step["dir"])
            run_register(register, store, d / "model", d / "train_run.json", d / "metrics.json",
                         Path(step["report"]), params_digest="race")
        else:  # gate: a person's `dagllm promote --version N`, many times over
            with registry_lock(client, register.model_name, register.lock_timeout_s, register.lock_lease_s):
                decide_and_apply(client, register.model_name, step["version"], load_policy(register.policy),
                                 register.policy, action="promote")


if __name__ == "__main__":
    main(sys.argv[1])
