#!/usr/bin/env bash
# Start the team's MLflow tracking server: PostgreSQL (or SQLite) store, artifacts in S3.
#
# Clients talk HTTP only: artifacts are proxied by the server (--serve-artifacts), so S3
# credentials live on the server alone. Settings come from the environment:
#
#   MLFLOW_BACKEND_STORE_URI      required, e.g. postgresql+psycopg2://mlflow:PASS@db:5432/mlflow
#                                 or sqlite:////srv/mlflow/mlflow.db for a single machine
#   MLFLOW_ARTIFACTS_DESTINATION  required, e.g. s3://dagllm-mlflow/artifacts (or a local folder)
#   MLFLOW_S3_ENDPOINT_URL        S3-compatible store (MinIO, Ceph, moto); unset for AWS S3
#   AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION   the server's S3 credentials
#   MLFLOW_HOST (127.0.0.1)  MLFLOW_PORT (5000)  MLFLOW_WORKERS (2)  PYTHON (python)
#
# Example (see mlflow/README.md):
#   MLFLOW_BACKEND_STORE_URI=sqlite:///$PWD/mlflow.db MLFLOW_ARTIFACTS_DESTINATION=$PWD/mlartifacts \
#     mlflow/server.sh
set -euo pipefail

: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (postgresql+psycopg2://... or sqlite:///...)}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (s3://bucket/prefix or a folder)}"

# No usage reports leave the machine; the server's background job runner (about 7 extra worker
# processes) is not needed by dagllm.
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false

exec "${PYTHON:-python}" -m mlflow server \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --serve-artifacts \
  --host "${MLFLOW_HOST:-127.0.0.1}" \
  --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-2}"
