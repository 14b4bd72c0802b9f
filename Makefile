# Two commands for a new user: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test clean

setup: $(STAMP)

# Re-install only when the package definition changes (fast when already done).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: setup
	$(BIN)/specsift demo -o out/demo

# The browser test drives Debian's Chromium (installed here when missing) via Playwright.
# Lint first (seconds; configuration in pyproject.toml [tool.ruff]), then the tests.
test: setup
	$(BIN)/ruff check .
	VENV=$(VENV) sh tests/browser_setup.sh
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) out build src/*.egg-info
