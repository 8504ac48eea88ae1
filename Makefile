# Two entry points: `make demo` (offline learning demo) and `make test` (lint + the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint format bench clean

$(BIN)/kilroy: pyproject.toml scripts/install.sh
	# the one install path (README, CI, Dockerfile): torch==2.13.0 pinned first, then the package
	PYTHON=$(PYTHON) EDITABLE=1 sh scripts/install.sh $(VENV) dev
	touch $@

setup: $(BIN)/kilroy

demo: setup
	$(BIN)/kilroy simulate --json data/simulate.json --plot data/simulate.png

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m "not gpu" -q

lint:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python benchmarks/generation.py
	$(BIN)/python benchmarks/adapters.py
	$(BIN)/python benchmarks/gateway_burst.py
	$(BIN)/python benchmarks/learning.py --quick --trainers ours,kilroy
	$(BIN)/python benchmarks/ab.py --quick --json data/ab.json

clean:
	rm -rf $(VENV) data/simulate data/tiny-gpt2* .pytest_cache
