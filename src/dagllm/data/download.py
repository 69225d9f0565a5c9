"""Bring one catalog file from a mirror into the raw directory, verified.

Files come from a directory mirror, an http(s) mirror in the same layout, or each file's pinned
upstream URL. Downloads go to ``<file>.part`` and resume with an HTTP ``Range`` request after a
dropped connection; network errors are retried with exponential backoff. A file is moved into
place only after its sha256 matches the catalog, so the raw directory never holds a corrupt file:
on a mismatch the partial download is deleted and the run stops with one message naming the
source and file. The bundled samples (``paths.mirror: samples``, or ``auto`` without
``../shared/data``) are project-written stand-ins whose checksums differ from the catalog's
(marked by a ``.sample-mirror`` file): they are copied and reported as ``sample``, not verified.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException, IncompleteRead
from pathlib import Path
from urllib.parse import quote

from dagllm.data.catalog import Source, SourceFile
from dagllm.io import sha256_file
from dagllm.params import FetchParams

CHUNK = 1 << 16
# A mirror directory holding this file is the bundled samples (or a copy): stand-ins, not pinned.
SAMPLE_MARKER = ".sample-mirror"


class FetchError(RuntimeError):
    """A file could not be fetched or failed its checksum; the message names source, file and fix."""


class _Missing(Exception):
    """The mirror does not have the file (HTTP 404 or no such path)."""


@dataclass
class FetchedFile:
    source: str
    path: str
    origin: str
    status: str  # downloaded | copied | cached | missing
    verified: str  # sha256 | unpinned | sample | -
    sha256: str = ""
    bytes: int = 0
    attempts: int = 0


def _origin(sf: SourceFile, mirror: Path | str | None) -> str:
    if mirror is None:
        return sf.url
    if isinstance(mirror, str):
        return f"{mirror.rstrip('/')}/{quote(sf.path)}"
    return str(Path(mirror) / sf.path)


def _copy(src: Path, part: Path, advance: Callable[[int], None]) -> None:
    if not src.is_file():
        raise _Missing(str(src))
    with open(src, "rb") as fin, open(part, "wb") as fout:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            advance(len(chunk))


def _http_get(url: str, part: Path, timeout: float, advance: Callable[[int], None]) -> None:
    """Download ``url`` into ``part``, resuming from its current size with a Range request."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise _Missing(url) from None
        if exc.code == 416 and have:  # nothing left to send: the part is complete
            return
        raise
    with resp:
        resumed = have and resp.status == 206
        if have and not resumed:
            advance(-have)  # the server ignored the range: start over
        expected = resp.headers.get("Content-Length")
        got = 0
        with open(part, "ab" if resumed else "wb") as fh:
            while chunk := resp.read(CHUNK):
                fh.write(chunk)
                got += len(chunk)
                advance(len(chunk))
    # http.client's read(n) returns b"" on a dropped connection instead of raising: check the length.
    if expected is not None and got < int(expected):
        raise IncompleteRead(b"", int(expected) - got)


def _fetch_one(src: Source, sf: SourceFile, origin: str, dest: Path, params: FetchParams,
               advance: Callable[[int], None]) -> int:
    """Bring one file to ``dest.part`` with retries; returns the number of attempts."""
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        attempt += 1
        try:
            if origin.startswith(("http://", "https://")):
                _http_get(origin, part, params.timeout_s, advance)
            else:
                _copy(Path(origin), part, advance)
            return attempt
        except _Missing:
            raise
        except (urllib.error.URLError, HTTPException, OSError, TimeoutError) as exc:
            if attempt > params.retries:
                raise FetchError(
                    f"source {src.id}: file {sf.path}: {attempt} attempts failed from {origin} ({exc}); "
                    f"the partial download {part} is kept and resumed by the next `dagllm fetch`"
                ) from None
            time.sleep(params.backoff_s * 2 ** (attempt - 1))


def fetch_file(src: Source, sf: SourceFile, mirror: Path | str | None, raw_dir: Path, params: FetchParams,
               is_sample: bool, advance: Callable[[int], None]) -> FetchedFile:
    """Bring ``sf`` of ``src`` into ``raw_dir`` (mirror layout) and say how; ``advance(n)`` reports bytes.

    Args:
        mirror: a directory or http(s) base URL in the mirror layout; None = the file's catalog URL.
        is_sample: the mirror is the bundled samples (copied, not checked against the sha256).

    Raises:
        FetchError: a required file is missing, fails its checksum, or cannot be downloaded.
    """
    origin = _origin(sf, mirror)
    if mirror is None and sf.prepare:
        raise FetchError(
            f"source {src.id}: file {sf.path} is made from {sf.url} ({sf.prepare}); prepare it and "
            "fetch it from a mirror that holds it (--mirror DIR|URL)"
        )
    if not origin.startswith(("http://", "https://")) and Path(origin).is_dir():
        raise FetchError(
            f"source {src.id}: {origin} is a directory, but the mirror layout has the file {sf.path} there; "
            "point --mirror at the mirror's root folder (the one holding each source's folder)"
        )
    dest = raw_dir / sf.path
    pinned = sf.sha256 is not None and not is_sample
    if pinned and dest.is_file() and sha256_file(dest) == sf.sha256:
        return FetchedFile(src.id, sf.path, origin, "cached", "sha256", sf.sha256, dest.stat().st_size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for fresh in (False, True):
        resumed = part.exists()
        try:
            attempts = _fetch_one(src, sf, origin, dest, params, advance)
        except _Missing:
            part.unlink(missing_ok=True)
            if sf.optional:
                return FetchedFile(src.id, sf.path, origin, "missing", "-")
            raise FetchError(
                f"source {src.id}: file {sf.path} not found at {origin}; use a mirror that has it "
                f"(--mirror DIR|URL) or drop {src.id} from ingest.sources"
            ) from None
        digest = sha256_file(part)
        if not pinned or digest == sf.sha256:
            break
        part.unlink()
        if fresh or not resumed:  # a resumed download may have joined two versions: retry once whole
            raise FetchError(
                f"source {src.id}: file {sf.path}: sha256 mismatch from {origin} (expected {sf.sha256}, "
                f"got {digest}); nothing was kept. The mirror's copy is corrupt or not the pinned version: "
                "fetch from another mirror, or fix the catalog entry if the pin is wrong"
            )
    os.replace(part, dest)
    status = "downloaded" if origin.startswith(("http://", "https://")) else "copied"
    verified = "sample" if is_sample else ("sha256" if pinned else "unpinned")
    return FetchedFile(src.id, sf.path, origin, status, verified, digest, dest.stat().st_size, attempts)


