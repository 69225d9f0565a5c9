"""`dagllm fetch` against a directory mirror and loopback HTTP servers (resume, corruption, 404)."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from dagllm.data.catalog import Source, SourceFile, load_catalog
from dagllm.data.download import FetchError
from dagllm.params import FetchParams
from dagllm.stages.fetch import run_fetch

from ..conftest import SAMPLES

FAST = FetchParams(retries=3, backoff_s=0.01, timeout_s=5)


def _pinned_source(mirror: Path, rel: str, *, optional: bool = False, sha: str | None = None) -> Source:
    """A one-file source pinned to the sha256 of ``mirror/rel``."""
    digest = sha or hashlib.sha256((mirror / rel).read_bytes()).hexdigest()
    return Source(id="t", name="t", homepage="h", license="l", citation="c",
                  files=[SourceFile(path=rel, url=f"https://example.invalid/{rel}", sha256=digest, split="train",
                                    reader="kobest_copa", optional=optional)])


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory with Range support; ``mode`` selects a misbehaviour."""

    mode = "ok"
    hits: list[str]

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.hits.append(self.headers.get("Range") or "full")
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        if self.mode == "corrupt":
            data = data[:-3] + b"XXX"
        start = 0
        rng = self.headers.get("Range")
        if rng and self.mode != "no-range":
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.mode in ("drop", "no-range") and start == 0:
            # Send half, then drop the connection: the client sees a short read.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(body)


@contextmanager
def serve(root: Path, mode: str = "ok") -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("H", (_Handler,), {"mode": mode, "hits": hits})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


REL = "kobest/v1.0/COPA/train.tsv"


def test_directory_mirror_copies_verifies_and_caches(tmp_path: Path):
    mirror = tmp_path / "mirror"
    shutil.copytree(SAMPLES / "kobest", mirror / "kobest")
    src = _pinned_source(mirror, REL)
    s = run_fetch(FAST, [src], mirror, tmp_path / "raw", tmp_path / "fetch.json")
    assert (tmp_path / "raw" / REL).read_bytes() == (SAMPLES / REL).read_bytes()
    assert [(f.status, f.verified) for f in s.files] == [("copied", "sha256")]
    cached = run_fetch(FAST, [src], mirror, tmp_path / "raw", tmp_path / "fetch.json")
    assert cached.files[0].status == "cached"
    (tmp_path / "raw" / REL).write_text("damaged", encoding="utf-8")  # a damaged copy is replaced
    assert run_fetch(FAST, [src], mirror, tmp_path / "raw", tmp_path / "fetch.json").files[0].status == "copied"
    report = json.loads((tmp_path / "fetch.json").read_text())
    assert report["files"][0]["path"] == REL


def test_bundled_samples_are_copied_unverified(tmp_path: Path):
    cat = load_catalog()
    s = run_fetch(FAST, [cat.source("kobest_copa")], SAMPLES, tmp_path / "raw", tmp_path / "fetch.json")
    assert {f.verified for f in s.files} == {"sample"}
    assert any("not checked" in line for line in s.lines())


def test_http_download_and_missing_optional(tmp_path: Path):
    src = _pinned_source(SAMPLES, REL)
    optional = Source(id="o", name="o", homepage="h", license="l", citation="c", files=[
        SourceFile(path="nope/absent.tsv", url="https://example.invalid/x", split="train", reader="kornli",
                   optional=True)])
    with serve(SAMPLES) as (url, _):
        s = run_fetch(FAST, [src, optional], url, tmp_path / "raw", tmp_path / "fetch.json")
    assert [(f.status, f.verified) for f in s.files] == [("downloaded", "sha256"), ("missing", "-")]
    assert (tmp_path / "raw" / REL).read_bytes() == (SAMPLES / REL).read_bytes()
    assert not (tmp_path / "raw/nope").exists() or not any((tmp_path / "raw/nope").iterdir())


def test_dropped_connection_resumes_with_range(tmp_path: Path):
    src = _pinned_source(SAMPLES, REL)
    with serve(SAMPLES, "drop") as (url, hits):
        s = run_fetch(FAST, [src], url, tmp_path / "raw", tmp_path / "fetch.json")
    assert hits[0] == "full" and hits[1].startswith("bytes=") and hits[1] != "bytes=0-"
    assert s.files[0].attempts == 2
    assert (tmp_path / "raw" / REL).read_bytes() == (SAMPLES / REL).read_bytes()
    assert not list((tmp_path / "raw").rglob("*.part"))


def test_corrupt_download_keeps_nothing(tmp_path: Path):
    src = _pinned_source(SAMPLES, REL)
    with serve(SAMPLES, "corrupt") as (url, _):
        with pytest.raises(FetchError, match=r"source t: file kobest/v1.0/COPA/train.tsv: sha256 mismatch"):
            run_fetch(FAST, [src], url, tmp_path / "raw", tmp_path / "fetch.json")
    assert not [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]


def test_missing_required_file_names_source_and_file(tmp_path: Path):
    mirror = tmp_path / "mirror"
    shutil.copytree(SAMPLES / "kobest", mirror / "kobest")
    src = _pinned_source(mirror, REL)
    (mirror / REL).unlink()
    with pytest.raises(FetchError, match=r"source t: file kobest/v1\.0/COPA/train\.tsv not found at .*mirror"):
        run_fetch(FAST, [src], mirror, tmp_path / "raw", tmp_path / "fetch.json")
    with serve(mirror) as (url, _):
        with pytest.raises(FetchError, match=r"not found at http://127\.0\.0\.1"):
            run_fetch(FAST, [src], url, tmp_path / "raw", tmp_path / "fetch.json")


def test_unreachable_server_retries_then_fails_clearly(tmp_path: Path):
    src = _pinned_source(SAMPLES, REL)
    with serve(SAMPLES) as (url, _):
        dead = url  # the port is free again once the server is gone
    with pytest.raises(FetchError, match=r"source t: file .*: 4 attempts failed"):
        run_fetch(FAST, [src], dead, tmp_path / "raw", tmp_path / "fetch.json")


def test_shared_mirror_over_http_verifies_real_checksums(tmp_path: Path):
    shared = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    if not (shared / "MANIFEST.md").is_file():
        pytest.skip("../shared/data (the real public files) is not on this machine")
    src = load_catalog().source("question_pair")
    with serve(shared.resolve()) as (url, _):
        s = run_fetch(FAST, [src], url, tmp_path / "raw", tmp_path / "fetch.json")
    assert {(f.status, f.verified) for f in s.files} == {("downloaded", "sha256")}


def test_prepared_file_needs_a_mirror(tmp_path: Path):
    src = load_catalog().source("kowiki")
    with pytest.raises(FetchError, match=r"source kowiki: file kowiki/.*wikiextractor"):
        run_fetch(FAST, [src], None, tmp_path / "raw", tmp_path / "fetch.json")
