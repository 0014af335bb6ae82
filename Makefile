# blinkbench: the two commands.
#   make demo   create .venv, install, run the whole pipeline on the embedded demo
#   make test   create .venv, install, run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
CORES ?= all

.PHONY: setup demo test test-fast lint bench clean-data

setup: $(VENV)/.installed

# Exact pins from requirements.lock, then the package itself without re-resolving.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)
	@echo "Report: $(abspath data/reports/index.html)"

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/snakemake --lint

bench: setup
	$(BIN)/python benchmarks/bench_ear_extraction.py

clean-data:
	rm -rf data/raw/demo data/manifests data/faces data/crops data/landmarks data/ear data/blinks data/reports logs .snakemake
