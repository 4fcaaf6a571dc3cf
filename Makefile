# smtptut: `make demo` and `make test` are the quick start; everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINTED := $(wildcard smtptut tests twisted bench tools) $(wildcard *.tac)

.PHONY: venv demo test lint typecheck trial bench clean

venv: $(STAMP) tests/js/node_modules/.package-lock.json

# The npm mailpit-api client that tests/test_inbox_mailpit_client.py drives
# (locked; npm reaches only its registry).
tests/js/node_modules/.package-lock.json: $(STAMP) tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund >$(VENV)/npm.log 2>&1 || { cat $(VENV)/npm.log; exit 1; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	$(BIN)/python -m pip install -q -e '.[dev]' >>$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	touch $(STAMP)

demo: venv
	$(BIN)/python tools/demo.py

trial: venv
	$(BIN)/trial --temp-directory=$(VENV)/_trial_temp tests

lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: venv
	$(BIN)/mypy smtptut tests tools

test: venv lint typecheck trial

bench: venv
	bash bench/run

clean:
	rm -rf $(VENV) _trial_temp .mypy_cache .ruff_cache tests/js/node_modules
