"""One rich progress bar style for every long loop (quiet when not on a terminal)."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),  # printed as it is
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    )
