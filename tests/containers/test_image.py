"""What a task container gets: every run-time file of the package and the promotion policy.

The expected file list comes from the checkout (git's tracked files under src/dagllm that are
not Python), not from the image or the code that loads them.
"""

import json
import subprocess
import threading
import time

from dagllm.params import load_params
from pipelines.containers import RUN_ID, RUN_LABEL, describe, own_containers, run_task_container

from ..conftest import REPO

# Runs inside the image, from its working directory (/home/dagllm), as the task bodies do.
PROBE = r"""
import json, pathlib, dagllm
from dagllm.data.catalog import default_catalog
from dagllm.params import RegisterParams
from dagllm.registry.policy import load_policy
pkg = pathlib.Path(dagllm.__file__).parent
files = sorted(str(p.relative_to(pkg)) for p in pkg.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc"))
cat = default_catalog()
policy = load_policy(RegisterParams().policy)
print("PROBE" + json.dumps({"files": files, "cwd": str(pathlib.Path.cwd()), "policy": policy.primary.metric,
                            "tasks": sorted(cat.tasks), "sources": sorted(cat.sources)}))
"""


def _probe(engine, image: str, tmp_path) -> dict:
    out = tmp_path / "probe.log"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = run_task_container(engine, image, ["python", "-c", PROBE], {}, network_mode="none")
    out.write_text(buf.getvalue())
    assert code == 0, buf.getvalue()[-3000:]
    line = next(x for x in buf.getvalue().splitlines() if x.startswith("PROBE"))
    return json.loads(line[len("PROBE"):])


def test_every_runtime_file_is_in_the_image(engine, image: str, tmp_path):
    got = _probe(engine, image, tmp_path)
    tracked = subprocess.run(["git", "ls-files", "src/dagllm"], cwd=REPO, check=True, capture_output=True,
                             text=True).stdout.split()
    expected = {t.removeprefix("src/dagllm/") for t in tracked if not t.endswith(".py")}
    assert expected, "no data files tracked under src/dagllm"
    missing = expected - set(got["files"])
    assert not missing, f"package data missing from the image (pyproject package-data): {sorted(missing)}"
    assert got["cwd"] != "/opt/dagllm"  # the policy was found through DAGLLM_HOME, not the working directory


def test_policy_catalog_and_eval_tasks_match_the_checkout(engine, image: str, tmp_path):
    got = _probe(engine, image, tmp_path)
    policy = __import__("yaml").safe_load((REPO / "mlflow/promotion_policy.yaml").read_text(encoding="utf-8"))
    assert got["policy"] == policy["primary"]["metric"]
    params = load_params(REPO / "params.yaml")
    assert set(params.render.tasks) <= set(got["tasks"])
    assert set(params.ingest.sources) | set(params.ingest.optional_sources) <= set(got["sources"])
    for task in params.evaluate.tasks:  # the task YAMLs of every protocol folder (evaluation/tasks/<protocol>/)
        assert any(f.startswith("evaluation/tasks/") and f.endswith(f"/{task}.yaml") for f in got["files"]), task


def test_a_failing_container_reports_its_exit_code(engine, image: str):
    # The reason for run_task_container: kfp's auto_remove start could report a failed task as SUCCESS.
    assert run_task_container(engine, image, ["python", "-c", "import sys; sys.exit(3)"], {},
                              network_mode="none") == 3
    assert not (left := own_containers(engine)), describe(left)  # removed after reading


def test_left_over_check_sees_this_runs_containers_only(engine, image: str):
    # own_containers must see a container of this run while it runs (else "none left" proves nothing),
    # and carry this run's id, not merely the image (another run on the engine uses the same image).
    import docker

    done: dict[str, int] = {}
    task = threading.Thread(target=lambda: done.setdefault("code", run_task_container(
        engine, image, ["python", "-c", "import time; time.sleep(5)"], {}, network_mode="none")))
    task.start()
    watcher = docker.from_env()
    seen: list = []
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline and task.is_alive():
        seen = own_containers(watcher)
        time.sleep(0.2)
    task.join(120)
    watcher.close()
    assert done.get("code") == 0
    assert len(seen) == 1 and seen[0].labels[RUN_LABEL] == RUN_ID
    assert not (left := own_containers(engine)), describe(left)
