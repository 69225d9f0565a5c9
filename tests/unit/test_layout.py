"""The layout of ``src/dagllm`` holds the plan in docs/architecture.md ("The house").

The allowed imports are read from that page's table (concern -> home -> may import), so the page
and the code cannot drift apart. Imports are read from the source (every ``import`` statement,
including those inside functions), not by importing the modules.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO

SRC = REPO / "src"
PKG = SRC / "dagllm"
LIBRARIES = {"data", "registry", "training", "evaluation", "serving"}


def _house_table() -> dict[str, set[str]]:
    """Unit -> the units it may import, from the table under "## The house"."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## The house", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    header, *body = rows
    assert [c.strip() for c in header.strip("|").split("|")] == ["concern", "home", "may import"]
    table: dict[str, set[str]] = {}
    for row in body:
        _, home, may = (c.strip() for c in row.strip("|").split("|"))
        homes = re.findall(r"`([^`]+)`", home)
        units = {"core"} if all(h.endswith(".py") and h != "cli.py" for h in homes) else {
            h.removesuffix("/").removesuffix(".py") for h in homes}
        assert len(units) == 1, f"one unit per row, got {homes}"
        table[units.pop()] = {u.strip() for u in may.split(",")}
    return table


def _core_modules() -> set[str]:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## The house", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.endswith("| core |") and "`params.py`" in line)
    return {h.removesuffix(".py") for h in re.findall(r"`([^`]+)`", row.split("|")[2])}


CORE = _core_modules()


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The unit of a dagllm module: core, cli, a package's name, or the root package itself."""
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    return "core" if parts[1] in CORE else parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every dagllm module this file imports, relative imports resolved."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            # `from dagllm.data import gate` imports the module dagllm.data.gate
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names if _is_module(f"{base}.{a.name}")]
    return [(line, m) for line, m in found if m == "dagllm" or m.startswith("dagllm.")]


def _is_module(name: str) -> bool:
    p = SRC.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _sources() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def test_the_root_holds_packages_the_core_and_the_cli_only():
    table = _house_table()
    loose = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert loose == CORE | {"cli"}
    packages = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(table) - {"core", "cli"}, "every package has a row in docs/architecture.md"
    stray = {p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__"} - packages
    assert not stray, f"directories without __init__.py at the root: {stray}"


def test_no_two_modules_share_a_name():
    names = Counter(p.stem for p in _sources() if p.name != "__init__.py")
    packages = Counter(p.parent.name for p in _sources() if p.name == "__init__.py" and p.parent != PKG)
    doubled = {n for n, c in (names + packages).items() if c > 1}
    assert not doubled, f"modules sharing a name: {sorted(doubled)}"


def test_every_import_is_allowed_by_the_house_table():
    table = _house_table()
    bad = []
    for path in _sources():
        src_unit = _unit(_module_name(path))
        for line, target in _imports(path):
            dst = _unit(target)
            if dst in (src_unit, "root") or target == "dagllm":
                continue
            if dst not in table[src_unit]:
                bad.append(f"{path.relative_to(REPO)}:{line} ({src_unit}) imports {target} ({dst})")
    assert not bad, "imports the table in docs/architecture.md does not allow:\n" + "\n".join(bad)


def test_library_packages_never_import_stages_pipeline_or_cli():
    table = _house_table()
    for lib in LIBRARIES:
        assert not table[lib] & {"stages", "pipeline", "cli"}, lib  # the table itself says so
    assert not table["core"] - {"core"}


def test_a_stage_never_imports_another_stage():
    for path in sorted((PKG / "stages").glob("*.py")):
        others = {m for _, m in _imports(path) if m.startswith("dagllm.stages.") and m != _module_name(path)}
        assert not others, f"{path.name} imports {others}"


@pytest.mark.parametrize("path", sorted(p for p in (PKG / "stages").glob("*.py") if p.name != "__init__.py"),
                         ids=lambda p: p.stem)
def test_a_stage_module_is_a_coordinator(path: Path):
    """One public ``run_<stage>``, its summary, and helpers that write its outputs; nothing else."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    public = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")]
    runs = [n for n in public if n.startswith("run_")]
    assert runs == [f"run_{path.stem}"]
    others = [n for n in public if n not in runs and not n.endswith("Summary")]
    assert all(n.split("_")[0] in ("write", "plot", "log") for n in others), others
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 200  # the largest stage is 159 lines


def test_stages_and_pipeline_never_import_kfp_or_dvc():
    for path in [*(PKG / "stages").glob("*.py"), *(PKG / "pipeline").glob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        assert not {n.split(".")[0] for n in names} & {"kfp", "dvc"}, path.name


def test_component_bodies_call_the_pipeline_glue_only():
    path = REPO / "components" / "stages.py"
    imported = {m for _, m in _imports_of_file(path)}
    assert imported and all(m.startswith("dagllm.pipeline.") or _unit(m) == "core" for m in imported), imported


def _imports_of_file(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, n.module) for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("dagllm")]


def _closure(modules: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m in seen or not _is_module(m):
            continue
        seen.add(m)
        p = SRC.joinpath(*m.split("."))
        path = p / "__init__.py" if (p / "__init__.py").is_file() else p.with_suffix(".py")
        todo += [t for _, t in _imports(path)]
    return seen


def _command_imports(command: str) -> set[str]:
    """The dagllm modules the CLI command's own body imports (the stage, and e.g. the balanced gate).

    The plumbing every command shares (``_stage``'s error types, ``_params``) is not a stage's code.
    """
    tree = ast.parse((PKG / "cli.py").read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == command)
    return {n.module for n in ast.walk(fn) if isinstance(n, ast.ImportFrom) and n.module
            and n.module.startswith("dagllm.")}


def _code_only(module: str) -> bool:
    """False for a package ``__init__`` that is nothing but its docstring."""
    p = SRC.joinpath(*module.split("."))
    if not (p / "__init__.py").is_file():
        return True
    body = ast.parse((p / "__init__.py").read_text(encoding="utf-8")).body
    return not (len(body) == 1 and isinstance(body[0], ast.Expr))


def _file_of(module: str) -> Path:
    p = SRC.joinpath(*module.split("."))
    return (p / "__init__.py") if (p / "__init__.py").is_file() else p.with_suffix(".py")


def test_each_dvc_stage_depends_on_the_code_its_command_runs():
    """A DVC stage reruns when a library module its command imports changes (core excepted)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in stages.items():
        assert stage["cmd"] == f"dagllm {name}"
        deps = [REPO / d for d in stage["deps"] if str(d).startswith("src/")]
        for d in deps:
            assert d.exists(), f"dvc.yaml stage {name}: dependency {d.relative_to(REPO)} does not exist"
        code = {m for m in _closure(_command_imports(name)) if _unit(m) not in ("core", "root") and _code_only(m)}
        assert f"dagllm.stages.{name}" in code
        missing = sorted(str(_file_of(m).relative_to(REPO)) for m in code
                         if not any(_file_of(m) == d or d in _file_of(m).parents for d in deps))
        assert not missing, f"dvc.yaml stage {name} lacks deps: {missing}"
