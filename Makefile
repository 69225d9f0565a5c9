# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test system-deps pipeline-compile clean test-containers

venv: $(STAMP)

# torch first, alone, so the CPU wheel (2.13.0) is taken before anything asks for "torch".
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c requirements.lock torch
	$(BIN)/python -m pip install -q -c requirements.lock -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dagllm check
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro
	$(BIN)/dagllm where

# Debian packages of the tests (chromium, fonts-nanum, postgresql): installed when missing and
# allowed (root or sudo), else one line saying what to run; see .ci/system-deps.
system-deps:
	.ci/system-deps

test: system-deps $(STAMP)
	$(BIN)/python -m pytest -q

# The CPU image built with podman, its run-time files checked, and the whole DAG run in it under
# kfp.local's DockerRunner (needs root and podman; docs/deploy.md, "Containers here").
test-containers: $(STAMP)
	.ci/system-deps containers
	PYTHON=$(BIN)/python components/containers/test.sh

# Both kept specs: the laptop one (kfp.local) and the cluster one (the kfp CLI submits it).
pipeline-compile: $(STAMP)
	$(BIN)/dagllm pipeline compile
	$(BIN)/dagllm pipeline compile --profile pipelines/cluster.yaml --output pipelines/compiled/dagllm-cluster.yaml

# Pipeline outputs only: the git-ignored files (DVC outputs, MLflow store); tracked metrics stay.
clean:
	git clean -fdX -- data models reports mlflow.db mlartifacts kfp_local
