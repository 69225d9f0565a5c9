"""Process settings the stages need at run time (never at import): offline hubs, no telemetry, quiet libraries."""

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

# Third-party progress bars off in stage output; dagllm's own (dagllm.progress, rich) stay.
# transformers and huggingface_hub read theirs at import, tqdm's TQDM_* defaults are read when tqdm
# is imported (lm-eval's "building contexts" bar has no other switch), so offline() must run before
# those imports: every entry point calls it first. great-expectations' bars are turned off in its
# context's config (dagllm.data.gate) and lm-eval's request bars by the model wrapper
# (dagllm.evaluation.harness); these variables cover the rest.
QUIET_DEFAULTS = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" / "Writing model shards"
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # datasets' "Generating test split"
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # artifact uploads and downloads
    "TQDM_DISABLE": "1",  # any other tqdm bar whose caller does not ask for one explicitly
}


def offline() -> None:
    """Set the offline, no-telemetry and quiet defaults unless the caller already chose otherwise."""
    for key, value in {**OFFLINE_DEFAULTS, **QUIET_DEFAULTS}.items():
        os.environ.setdefault(key, value)
