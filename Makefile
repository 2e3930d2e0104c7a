# Two entry points that work on a fresh machine: `make run` and `make test`.
# Both create .venv in the repository and install the CPU build of torch before the package,
# so pip never pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/morphml run examples/digits.yaml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# scripts/run-tests.sh first provides the real components the tests start (SLURM, Chromium,
# Prometheus), as root; elsewhere the tests that need them skip and say why.
test: lint typecheck
	PYTEST=$(BIN)/pytest scripts/run-tests.sh

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache .hypothesis
