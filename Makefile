# qaworker — developer entry points. Every target bootstraps .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REALSTACK ?= ../shared/realstack
PYTEST_ARGS ?=

.PHONY: venv demo demo-headless test interop faults lint screenshots bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/qaworker demo

demo-headless: $(STAMP)
	$(BIN)/qaworker demo --no-ui

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# Real openQA stack (Debian 12 packages) on 127.0.0.1; needs root. Brought up when not up,
# stopped again afterwards whatever happened (only if this target started it).
interop: $(STAMP)
	bash tests/interop/run.sh $(REALSTACK) $(BIN)/python $(PYTEST_ARGS)

faults: $(STAMP)
	$(BIN)/python -m pytest -q -m faults tests/faults $(PYTEST_ARGS)

screenshots: $(STAMP)
	$(BIN)/python -m app.screenshots screenshots

bench: $(STAMP)
	$(BIN)/python bench/job_overhead.py
	$(BIN)/python bench/upload.py
	$(BIN)/python bench/cache.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
