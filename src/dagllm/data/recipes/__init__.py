"""Named data recipes: the KIT-19 mix and the DaG LLM 1.0 mix as params overlays.

A recipe (``recipes/NAME.yaml``) sets sources, tasks, caps and seeds; :func:`write_recipe` merges
it into a base params file and writes a complete params file, after dropping (and listing) the
sources of which the mirror holds no file and the tasks left without rows. The written file is an
ordinary params file: ``dagllm <stage> --params FILE``, or copied to params.yaml for ``dvc repro``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dagllm.data.catalog import Catalog
from dagllm.params import ParamsError, load_yaml_file, params_from_dict

RECIPES_DIR = Path(__file__).parent


@dataclass
class Recipe:
    name: str
    description: str
    params: dict
    dropped_sources: list[str] = field(default_factory=list)
    dropped_tasks: list[str] = field(default_factory=list)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name: str) -> Recipe:
    """The overlay of recipe ``name``; a :class:`ParamsError` lists the known names otherwise."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ParamsError(f"unknown recipe {name!r}; known: {', '.join(recipe_names())}")
    data = load_yaml_file(path)
    return Recipe(name, data["description"], data["params"])


def _merge(base: dict, overlay: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _present(catalog: Catalog, source: str, split: str | None, mirror: Path | str | None) -> bool:
    """Whether the mirror holds a file of ``source`` (of ``split``); an URL mirror is assumed complete."""
    if not isinstance(mirror, Path):
        return True
    return any((mirror / f.path).is_file() for f in catalog.source(source).files
               if split is None or (f.split == split and not f.benchmark))


def apply_recipe(recipe: Recipe, base: dict, catalog: Catalog, mirror: Path | str | None) -> Recipe:
    """``recipe`` merged into ``base``, without the sources the mirror lacks and the tasks left empty."""
    data = _merge(base, recipe.params)
    if data["render"]["tasks"] == "all":
        data["render"]["tasks"] = sorted(catalog.tasks)
    ingest = data["ingest"]
    dropped = [s for s in ingest["sources"] + ingest["optional_sources"] if not _present(catalog, s, None, mirror)]
    ingest["sources"] = [s for s in ingest["sources"] if s not in dropped]
    ingest["optional_sources"] = [s for s in ingest["optional_sources"] if s not in dropped]
    kept = set(ingest["sources"]) | set(ingest["optional_sources"])
    tasks = data["render"]["tasks"]
    empty = [t for t in tasks if not any(ts.source in kept and _present(catalog, ts.source, split, mirror)
                                         for ts in catalog.task(t).sources for split in ts.splits)]
    data["render"]["tasks"] = [t for t in tasks if t not in empty]
    params_from_dict(data, f"recipe {recipe.name}")  # a recipe must give valid params
    return Recipe(recipe.name, recipe.description, data, dropped, empty)


def write_recipe(recipe: Recipe, out: Path) -> None:
    """Write the merged params with a header naming the recipe and what the mirror lacked."""
    head = [f"# Written by `dagllm recipe {recipe.name}`: {recipe.description}."]
    if recipe.dropped_sources:
        head.append(f"# Not in the mirror (dropped): sources {', '.join(recipe.dropped_sources)}")
    if recipe.dropped_tasks:
        head.append(f"# Left without rows (dropped): tasks {', '.join(recipe.dropped_tasks)}")
    body = yaml.safe_dump(recipe.params, allow_unicode=True, sort_keys=False, width=110)
    out.write_text("\n".join(head) + "\n" + body, encoding="utf-8")
