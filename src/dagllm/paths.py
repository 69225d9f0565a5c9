"""The fixed file layout every stage reads and writes (relative to the working directory).

DVC stages, the CLI and the README all name these paths; KFP components pass artifact paths
instead, which is why stage functions take paths as arguments rather than calling this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dagllm.params import PathsParams

SHARED_MIRROR = Path("../shared/data")
SAMPLES_DIR = Path(__file__).parent / "data" / "catalog" / "samples"


def is_url(setting: str) -> bool:
    return setting.startswith(("http://", "https://"))


def mirror_location(setting: str) -> Path | str | None:
    """Where `dagllm fetch` reads: a directory, an http(s) base URL, or None for upstream URLs."""
    if setting == "upstream":
        return None
    if is_url(setting):
        return setting
    return resolve_mirror(setting)


def resolve_mirror(setting: str) -> Path:
    """The directory holding source files in the mirror layout.

    ``auto`` picks ``../shared/data`` when it exists (the real public files), otherwise the small
    sample files bundled with dagllm, written by the project in the same formats.
    """
    if setting == "auto":
        return SHARED_MIRROR if SHARED_MIRROR.is_dir() else SAMPLES_DIR
    if setting == "samples":
        return SAMPLES_DIR
    return Path(setting)


@dataclass(frozen=True)
class Layout:
    """Every output path of the pipeline."""

    data: Path
    models: Path
    reports: Path

    @classmethod
    def from_params(cls, p: PathsParams) -> Layout:
        return cls(Path(p.data_dir), Path(p.models_dir), Path(p.reports_dir))

    @property
    def raw(self) -> Path:
        """Fetched source files in the mirror layout (a DVC output; ingest reads here)."""
        return self.data / "raw"

    @property
    def fetch_report(self) -> Path:
        return self.reports / "fetch.json"

    @property
    def canonical(self) -> Path:
        return self.data / "canonical" / "records.parquet"

    @property
    def rejected(self) -> Path:
        return self.data / "rejected"

    @property
    def rendered(self) -> Path:
        return self.data / "rendered" / "records.parquet"

    @property
    def validated(self) -> Path:
        return self.data / "validated" / "records.parquet"

    @property
    def validated_canonical(self) -> Path:
        """The canonical rows the ingested gate kept (decontamination and evaluation read these)."""
        return self.data / "validated" / "canonical.parquet"

    @property
    def validation_quarantine(self) -> Path:
        return self.data / "validated" / "quarantine"

    @property
    def decontaminated(self) -> Path:
        return self.data / "decontaminated" / "records.parquet"

    @property
    def decontamination_report(self) -> Path:
        return self.reports / "decontamination.json"

    @property
    def balanced_quarantine(self) -> Path:
        return self.data / "balanced" / "quarantine"

    @property
    def balanced_validation_dir(self) -> Path:
        return self.reports / "validation_balanced"

    @property
    def balance_chart(self) -> Path:
        return self.reports / "balance_mix.png"

    @property
    def train_split(self) -> Path:
        return self.data / "balanced" / "train.parquet"

    @property
    def val_split(self) -> Path:
        return self.data / "balanced" / "validation.parquet"

    @property
    def model_dir(self) -> Path:
        return self.models / "final"

    @property
    def train_run(self) -> Path:
        return self.models / "train_run.json"

    @property
    def ingest_report(self) -> Path:
        return self.reports / "ingest.json"

    @property
    def render_report(self) -> Path:
        return self.reports / "render.json"

    @property
    def validation_dir(self) -> Path:
        return self.reports / "validation"

    @property
    def balance_report(self) -> Path:
        return self.reports / "balance.json"

    @property
    def train_metrics(self) -> Path:
        return self.reports / "train_metrics.json"

    @property
    def train_curve(self) -> Path:
        return self.reports / "train_loss.csv"

    @property
    def eval_dir(self) -> Path:
        return self.reports / "eval"

    @property
    def register_report(self) -> Path:
        return self.reports / "register.json"

    @property
    def model_card(self) -> Path:
        return self.reports / "model_card.md"

    @property
    def promotion_report(self) -> Path:
        return self.reports / "promotion.json"


def runtime_file(path: Path | str) -> Path:
    """A run-time file of the project (e.g. ``register.policy``) as a task will find it.

    A relative path that is not under the working directory resolves against ``$DAGLLM_HOME``
    when that is set: the images set it to where they copy the repository's files, since a
    KFP task runs in the image's working directory, not in a checkout.
    """
    import os

    path = Path(path)
    home = os.environ.get("DAGLLM_HOME")
    if path.is_absolute() or path.exists() or not home:
        return path
    return Path(home) / path
