# blinkbench: the two commands.
#   make demo   create .venv, install, run the whole pipeline on the embedded demo
#   make test   create .venv, install, run the test suite
#   make record write dvc.lock for the outputs of a Snakemake run (no recomputing)
#   make pull   dvc pull the committed results, then mark them done for Snakemake too
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
CORES ?= all
# Free disk the install needs (scripts/check_free_space.sh says why); 0 skips the check.
SETUP_FREE_GB ?= 9

.PHONY: setup demo study-shared study-shared-quick study-shared-fgsm test test-fast lint bench clean-data record pull s3-start s3-stop

setup: $(VENV)/.installed

# Exact pins from requirements.lock, then the package itself without re-resolving.
$(VENV)/.installed: pyproject.toml requirements.lock
	@if [ ! -d $(VENV) ]; then bash scripts/check_free_space.sh $(SETUP_FREE_GB) .; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# The whole pipeline, then dvc.lock records what it made (so `dvc status` is clean and a
# collaborator's `dvc pull` + `dvc repro` recomputes nothing).
demo: setup
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/python -m blinkbench.ops.sync record
	@echo "Report: $(abspath data/reports/index.html)"

# The real-footage study on ../shared/samples (configs/shared.yaml; README "Real footage").
SHARED_CONFIGS ?= configs/shared.yaml
study-shared: setup
	$(BIN)/snakemake --configfile $(SHARED_CONFIGS) --cores $(CORES)
	@echo "Report: $(abspath data/reports/index.html)"

# A first pass that fits a 2-core machine (configs/shared_quick.yaml layered on shared.yaml).
study-shared-quick: SHARED_CONFIGS += configs/shared_quick.yaml
study-shared-quick: study-shared

# FGSM alone over the whole eps x compression grid (configs/shared_fgsm.yaml on shared.yaml).
study-shared-fgsm: SHARED_CONFIGS += configs/shared_fgsm.yaml
study-shared-fgsm: study-shared

# Test files spread over TEST_WORKERS processes (pytest-xdist); a file stays in one process,
# so its module fixtures (a demo run, a trained model) are built once. Files start in the
# order tests/conftest.py gives them (the end-to-end ones first).
TEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: setup
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not slow"

lint: setup
	$(BIN)/snakemake --lint

bench: setup
	$(BIN)/python benchmarks/bench_ear_extraction.py

clean-data:
	rm -rf data/raw/demo data/manifests data/faces data/crops data/landmarks data/ear data/blinks data/reports logs .snakemake

# Sharing results (README "Sharing results"): dvc.lock records a Snakemake run without
# recomputing; a collaborator pulls it and neither tool finds anything to do.
record: setup
	$(BIN)/python -m blinkbench.ops.sync record

pull: setup
	$(BIN)/python -m blinkbench.ops.sync pull

# The local S3 server used as the DVC remote (needs BLINKBENCH_S3_ACCESS_KEY_ID/_SECRET_ACCESS_KEY).
s3-start: setup
	PYTHON=$(BIN)/python scripts/s3_server.sh start
	PYTHON=$(BIN)/python scripts/s3_server.sh configure

s3-stop:
	PYTHON=$(BIN)/python scripts/s3_server.sh stop
