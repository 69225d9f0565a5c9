"""Small file helpers shared by the stages: atomic JSON/Parquet writes and content digests."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented UTF-8 JSON, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2, sort_keys=False, default=str)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """Write a DataFrame as Parquet atomically, without the pandas index."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def read_parquet(path: Path, what: str) -> pd.DataFrame:
    """Read a Parquet file an earlier stage wrote; a missing file names the stage to run."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `dagllm {what}` first (or `dvc repro`)")
    return pd.read_parquet(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_dir(path: Path) -> str:
    """Digest of a directory tree: relative names and contents, in sorted order."""
    h = hashlib.sha256()
    root = Path(path)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def stable_hash(*parts: str, n: int = 16) -> str:
    """Short hex digest of the joined parts: the same on every machine and run."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:n]
