"""Fetch: the catalog's files of the selected sources -> ``data/raw/`` (mirror layout), verified.

Each file is brought in by :func:`dagllm.data.download.fetch_file` (directory mirror, http(s)
mirror or pinned upstream URL; resumed, retried, moved into place only after its sha256 matches);
this stage shows the progress and writes ``reports/fetch.json``. The bundled samples (marked by a
``.sample-mirror`` file) are copied and reported as ``sample``, not verified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from dagllm.data.catalog import Source
from dagllm.data.download import SAMPLE_MARKER, FetchedFile, fetch_file
from dagllm.io import write_json
from dagllm.params import FetchParams


@dataclass
class FetchSummary:
    mirror: str
    raw_dir: str
    files: list[FetchedFile] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"mirror": self.mirror, "raw_dir": self.raw_dir, "files": [asdict(f) for f in self.files]}

    def lines(self) -> list[str]:
        by: dict[str, int] = {}
        for f in self.files:
            by[f.status] = by.get(f.status, 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(by.items()))
        out = [f"{len(self.files)} files into {self.raw_dir} from {self.mirror} ({counts})"]
        out += [f"not in the mirror (optional, skipped): {f.source} {f.path}" for f in self.files
                if f.status == "missing"]
        if any(f.verified == "sample" for f in self.files):
            out.append("bundled sample files: stand-ins, not checked against the catalog's sha256")
        return out


def _bar() -> Progress:
    # markup=False: a file name is printed as it is ("[1].tsv" is not markup)
    return Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), transient=True)


def run_fetch(params: FetchParams, sources: list[Source], mirror: Path | str | None, raw_dir: Path,
              report_path: Path) -> FetchSummary:
    """Fetch every catalog file of ``sources`` into ``raw_dir`` and write the report.

    Args:
        params: retries, backoff and timeout.
        sources: the selected catalog sources (files of other sources are never touched).
        mirror: a directory or http(s) base URL in the mirror layout; None = each file's catalog URL.
        raw_dir: destination, mirror layout.
        report_path: where the per-file JSON report goes.

    Raises:
        FetchError: a required file is missing, fails its checksum, or cannot be downloaded.
    """
    is_sample = isinstance(mirror, Path) and (mirror / SAMPLE_MARKER).is_file()
    where = "upstream URLs" if mirror is None else str(mirror)
    summary = FetchSummary(where, str(raw_dir))
    with _bar() as bar:
        for src in sources:
            for sf in src.files:
                task = bar.add_task(f"{src.id}: {Path(sf.path).name}", total=None)
                got = fetch_file(src, sf, mirror, raw_dir, params, is_sample,
                                 lambda n, t=task: bar.advance(t, n))
                summary.files.append(got)
                bar.remove_task(task)
    write_json(report_path, summary.to_dict())
    return summary
