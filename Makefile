# qaworker — developer entry points. Every target bootstraps .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REALSTACK ?= ../shared/realstack
PYTEST_ARGS ?=
# System tools the tests use for real (rsync daemon + client, optipng, pngquant); Debian package = tool name.
SYSTEM_TOOLS ?= rsync optipng pngquant
APT_GET ?= apt-get
IS_ROOT ?= $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: venv system-tools demo demo-headless test interop faults lint screenshots bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Missing tools are installed when we are root (CI, a fresh container), else make stops with the one
# command that installs them: a missing tool must never turn into skipped tests.
system-tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$(IS_ROOT)" != yes ]; then \
		echo "make: the tests need$$missing; install with:  sudo $(APT_GET) install -y$$missing" >&2; exit 1; \
	fi; \
	echo "make: installing$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	$(APT_GET) update -qq >/dev/null && $(APT_GET) install -y -qq --no-install-recommends $$missing >/dev/null \
		|| { echo "make: could not install$$missing" >&2; exit 1; }

demo: $(STAMP)
	$(BIN)/qaworker demo

demo-headless: $(STAMP)
	$(BIN)/qaworker demo --no-ui

test: $(STAMP) system-tools
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)  # markers: see addopts in pyproject.toml

lint: $(STAMP)
	$(BIN)/ruff check .

# Real openQA stack (Debian 12 packages) on 127.0.0.1; needs root. Brought up when not up,
# stopped again afterwards whatever happened (only if this target started it).
interop: $(STAMP)
	bash tests/interop/run.sh $(REALSTACK) $(BIN)/python $(PYTEST_ARGS)

faults: $(STAMP) system-tools
	$(BIN)/python -m pytest -q -m faults tests/faults $(PYTEST_ARGS)

screenshots: $(STAMP)
	$(BIN)/python -m tests.tui.screenshots screenshots

bench: $(STAMP)
	$(BIN)/python bench/job_overhead.py
	$(BIN)/python bench/upload.py
	$(BIN)/python bench/cache.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
