from pathlib import Path

import pytest
from jinja2 import meta

from dagllm.data.catalog import CatalogError, load_catalog
from dagllm.data.readers import READERS
from dagllm.data.templating import environment

from ..conftest import SAMPLES


def test_every_catalog_file_loads_and_cross_checks():
    cat = load_catalog()
    assert {"kobest_copa", "apeach", "nsmc"} <= set(cat.sources)
    assert {"kobest_copa_causal", "apeach_hate", "nsmc_sentiment"} <= set(cat.tasks)
    for src in cat.sources.values():
        for f in src.files:
            assert f.reader in READERS, f"{src.id}: reader {f.reader}"
            assert (SAMPLES / f.path).is_file(), f"sample file missing for {src.id}: {f.path}"


@pytest.mark.parametrize("task_id", sorted(load_catalog().tasks))
def test_template_variables_exist_in_task_fields(task_id):
    task = load_catalog().tasks[task_id]
    allowed = set(task.fields) | {"label", "answer"}
    allowed = task.variables
    kinds = {t.kind for t in task.templates}
    assert kinds == {"instruction", "question"}
    for tpl in task.templates:
        for part in (tpl.instruction, tpl.input, tpl.output, *(tpl.choices or [])):
            used = meta.find_undeclared_variables(environment().parse(part))
            assert used <= allowed, f"{task_id}/{tpl.id} uses {used - allowed}"


def test_every_bundled_template_passes_the_static_template_checks():
    # what dagllm check refuses in a team task file (loader tags, unknown filters, private attributes)
    # must not be in the catalog's own templates either
    from dagllm.data.templating import task_template_problems

    cat = load_catalog()
    assert [p for t in cat.tasks.values() for p in task_template_problems(t)] == []


def _catalog_with(tmp_path: Path, task_yaml: str) -> Path:
    import shutil

    from dagllm.data.catalog import CATALOG_DIR

    root = tmp_path / "cat"
    shutil.copytree(CATALOG_DIR / "sources", root / "sources")
    (root / "tasks").mkdir()
    (root / "tasks" / "t.yaml").write_text(task_yaml, encoding="utf-8")
    return root


def test_task_with_unknown_source_is_rejected_with_file_name(tmp_path: Path):
    root = _catalog_with(tmp_path, """
id: t
category: c
description: d
sources: [{source: nowhere}]
fields: [text]
templates: [{id: a, kind: question, instruction: "{{ text }}", output: x}]
sample: {fields: {text: 가}}
""")
    with pytest.raises(CatalogError, match=r"t\.yaml: source 'nowhere' is not in the catalog"):
        load_catalog(root)


def test_schema_error_names_file_and_key(tmp_path: Path):
    root = _catalog_with(tmp_path, """
id: t
category: c
description: d
sources: [{source: apeach}]
fields: [text]
templates: [{id: a, kind: quiz, instruction: "x", output: x}]
sample: {fields: {text: 가}}
""")
    with pytest.raises(CatalogError, match=r"t\.yaml: templates\.0\.kind"):
        load_catalog(root)


def test_id_must_match_file_name(tmp_path: Path):
    root = _catalog_with(tmp_path, """
id: other
category: c
description: d
sources: [{source: apeach}]
fields: [text]
templates: [{id: a, kind: question, instruction: "x", output: x}]
sample: {fields: {text: 가}}
""")
    with pytest.raises(CatalogError, match="must equal the file name"):
        load_catalog(root)


def test_catalog_pins_match_the_shared_mirror_and_the_data_contract():
    """Every sha256 in the catalog matches ../shared/data; readers per source match docs/data.md."""
    import hashlib
    import re

    from ..conftest import REPO

    cat = load_catalog()
    shared = REPO.parent.parent / "shared" / "data"
    shared = shared if shared.is_dir() else REPO / ".." / "shared" / "data"
    for src in cat.sources.values():
        assert src.homepage and src.license and src.citation, src.id
        for f in src.files:
            assert re.search(r"[0-9a-f]{12}|/v\d|/\d{8}/|resolve/", f.url), f"{src.id}: {f.url} not pinned"
            if f.sha256 and (shared / f.path).is_file():
                assert hashlib.sha256((shared / f.path).read_bytes()).hexdigest() == f.sha256, f.path
    table = (REPO / "docs" / "data.md").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^\| `([a-z0-9_]+)` \| [^|]+ \| ([^|]+) \|", table, flags=re.M))
    assert set(documented) == set(cat.sources)
    for sid, readers in documented.items():
        assert {f.reader for f in cat.source(sid).files} == set(re.findall(r"`([a-z0-9_]+)`", readers)), sid
