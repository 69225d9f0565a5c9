"""Process settings the stages need at run time (never at import): offline hubs, no telemetry."""

from __future__ import annotations

import os

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",  # models and tokenizers come from local directories only
    "HF_DATASETS_OFFLINE": "1",  # benchmark data comes from local files only
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "False",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def offline() -> None:
    """Set the offline/no-telemetry defaults unless the caller already chose otherwise."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
