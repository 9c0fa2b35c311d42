# Both targets create .venv and install into it, so they work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: quickstart test test-slow lint install install-dev benchmarks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,s3]'

# The main job: a real search on the embedded defaults (SQLite, bundled digits).
quickstart: install
	$(BIN)/hpsearch run --study quickstart --model cnn --dataset mnist-sample --trials 6 --workers 2 \
		--epochs 3 --enqueue-defaults
	$(BIN)/hpsearch best --study quickstart

# The default test selection (in-process, minutes); the suites behind markers (integration, slow, PostgreSQL,
# browser) are `make test-slow`.
test: install-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-slow: install-dev
	$(BIN)/python -m pytest -m "integration or slow or postgres or browser" --durations=25

# All benchmarks, one after another (hours on 2 cores); Markdown and plots land in benchmarks/out/.
# Smaller runs: see each script's --help and the commands in BENCHMARKS.md.
DATA_DIR ?= ../shared/datasets/mnist
benchmarks: install-dev
	mkdir -p benchmarks/out
	$(BIN)/python benchmarks/trial_cost.py --data-dir $(DATA_DIR) | tee benchmarks/out/trial_cost.md
	$(BIN)/python benchmarks/memory.py --data-dir $(DATA_DIR) | tee benchmarks/out/memory.md
	$(BIN)/python benchmarks/search_race.py --data-dir $(DATA_DIR) | tee benchmarks/out/race.md
	$(BIN)/python benchmarks/storage.py | tee benchmarks/out/storage.md
	$(BIN)/python benchmarks/workers_plan.py --data-dir $(DATA_DIR) | tee benchmarks/out/workers_plan.md
	$(BIN)/python benchmarks/startup.py --data-dir $(DATA_DIR) | tee benchmarks/out/startup.md
	$(BIN)/python benchmarks/commands.py | tee benchmarks/out/commands.md
	$(BIN)/python benchmarks/proxy.py | tee benchmarks/out/proxy.md
