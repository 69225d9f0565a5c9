"""Source files -> canonical rows: which files a run reads, and each file through its reader.

A canonical row is one data row of a source file (``CANONICAL_COLUMNS``): its fields as JSON, its
label, licence and place in the file, and a stable id. Every row a reader yields is either kept or
rejected with its line and reason, so ``read == kept + rejected`` holds per file. Catalog files
are read from the fetched copy (``data/raw``); a team's own files (``ingest.local``) are read
where they are, through the same readers. :mod:`dagllm.stages.ingest` writes the table.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dagllm.data.catalog import Catalog, Source, SourceFile
from dagllm.data.readers import READERS, FileFormatError, Reject, Row
from dagllm.io import stable_hash
from dagllm.params import IngestParams, LocalSource

CANONICAL_COLUMNS = [
    "id", "source", "split", "native_id", "fields", "label", "license", "benchmark", "file", "line",
]


class IngestError(RuntimeError):
    """A whole source file is missing or unreadable; the message names it and the fix."""


@dataclass
class FileCount:
    source: str
    file: str
    split: str
    read: int = 0
    kept: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


def _record_id(source: str, split: str, row: Row, seen: Counter) -> str:
    if row.native_id:
        key = stable_hash(source, split, "id", row.native_id)
    else:
        key = stable_hash(source, split, "content", json.dumps(row.fields, sort_keys=True, ensure_ascii=False))
    seen[key] += 1
    return key if seen[key] == 1 else f"{key}-{seen[key]}"


def _local_source(local: LocalSource, catalog: Catalog) -> tuple[Source, SourceFile]:
    """A team's file as a one-file source (no URL, no checksum)."""
    known = catalog.sources.get(local.id)  # the catalog may hold it already (teamdata.with_local)
    if known is not None and known.files[0].url != Path(local.path).resolve().as_uri():
        raise IngestError(f"ingest.local: id {local.id!r} is a catalog source; give your file another id")
    path = Path(local.path)
    if path.is_dir():
        raise IngestError(f"ingest.local {local.id}: {path} is a directory, not a file; set ingest.local[].path "
                          f"to one file inside it ({_listing(path)})")
    if not path.is_file():
        raise IngestError(f"ingest.local {local.id}: file {path} not found; fix ingest.local[].path")
    src = Source(id=local.id, name=local.id, homepage="", license=local.license, citation="",
                 files=[SourceFile(path=str(path), url=path.resolve().as_uri(), split=local.split,
                                   reader=local.reader, benchmark=local.benchmark)])
    return src, src.files[0]


def _listing(folder: Path, n: int = 5) -> str:
    names = sorted(p.name for p in folder.iterdir())
    return ("it holds " + ", ".join(names[:n]) + (", ..." if len(names) > n else "")) if names else "it is empty"


def read_source_file(src: Source, sf: SourceFile, path: Path, limit: int | None):
    """Read one file through its reader: ``(count, kept canonical rows, rejects)``, at most ``limit`` rows.

    Raises:
        IngestError: the file is absent, a directory, of an unknown reader, or not in the reader's format.
    """
    if path.is_dir():
        raise IngestError(f"source {src.id}: {path} is a directory where the catalog expects the file "
                          f"{sf.path} ({_listing(path)}); remove it and fetch again (`dagllm fetch`)")
    if not path.is_file():
        raise IngestError(
            f"source {src.id}: file {path} not found; fetch it (`dagllm fetch`, with --mirror DIR|URL "
            f"for a mirror holding {sf.path}) or drop {src.id} from ingest.sources"
        )
    try:
        read = READERS[sf.reader]
    except KeyError:
        raise IngestError(f"source {src.id}: unknown reader {sf.reader!r}; known: {', '.join(sorted(READERS))}") from None
    count = FileCount(src.id, sf.path, sf.split)
    kept: list[dict] = []
    rejects: list[dict] = []
    seen: Counter = Counter()
    try:
        for item in read(path):
            if limit is not None and count.read >= limit:
                break
            count.read += 1
            if isinstance(item, Reject):
                count.rejected[item.reason] = count.rejected.get(item.reason, 0) + 1
                rejects.append({"source": src.id, "file": sf.path, "line": item.line,
                                "reason": item.reason, "raw": item.raw})
                continue
            kept.append({
                "id": _record_id(src.id, sf.split, item, seen),
                "source": src.id, "split": sf.split, "native_id": item.native_id,
                "fields": json.dumps(item.fields, ensure_ascii=False), "label": item.label,
                "license": src.license, "benchmark": sf.benchmark, "file": sf.path, "line": item.line,
            })
    except FileFormatError as exc:
        raise IngestError(f"source {src.id}: {exc}") from None
    count.kept = len(kept)
    assert count.read == count.kept + sum(count.rejected.values())
    return count, kept, rejects


def selected_sources(params: IngestParams, catalog: Catalog) -> list[Source]:
    """The sources to fetch and ingest: ``ingest.sources``, then ``ingest.optional_sources``.

    Every file of an optional source (a benchmark-only set such as KLUE YNAT, absent from
    ``../shared/data``) is marked optional, so fetch and ingest skip it with a note when absent.
    """
    required = [catalog.source(s) for s in params.sources]
    optional = [catalog.source(s) for s in params.optional_sources if s not in params.sources]
    return required + [
        src.model_copy(update={"files": [f.model_copy(update={"optional": True}) for f in src.files]})
        for src in optional
    ]


def ingest_jobs(params: IngestParams, catalog: Catalog, raw_dir: Path) -> tuple[list, list[dict]]:
    """(source, file, path) to read, and the optional catalog files absent from ``raw_dir``."""
    jobs, skipped = [], []
    for src in selected_sources(params, catalog):
        present = [f for f in src.files if (raw_dir / f.path).is_file()]
        absent = [f for f in src.files if f.optional and f not in present]
        if not present and src.files and src.id in params.sources:
            first = src.files[0]
            jobs.append((src, first, raw_dir / first.path))  # fails with the one clear message
            continue
        jobs += [(src, f, raw_dir / f.path) for f in src.files if f not in absent]
        skipped += [{"source": src.id, "file": f.path, "reason": "optional file not fetched (not in the mirror)"}
                    for f in absent]
    for local in params.local:
        src, sf = _local_source(local, catalog)
        jobs.append((src, sf, Path(sf.path)))
    return jobs, skipped


