"""lm-evaluation-harness task YAMLs of the project (data read from local files, never a hub)."""
