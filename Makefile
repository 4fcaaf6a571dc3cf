# smtptut: `make demo` and `make test` are the quick start; everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINTED := $(wildcard smtptut tests twisted bench tools) $(wildcard *.tac)

.PHONY: venv browser demo test lint typecheck trial bench clean

venv: $(STAMP) tests/js/node_modules/.package-lock.json
	sh tools/debian-test-packages.sh

# The npm mailpit-api client that tests/test_inbox_mailpit_client.py drives
# (locked; npm reaches only its registry).
tests/js/node_modules/.package-lock.json: $(STAMP) tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund >$(VENV)/npm.log 2>&1 || { cat $(VENV)/npm.log; exit 1; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip >$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	$(BIN)/python -m pip install -q -e '.[dev]' >>$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	touch $(STAMP)

# The browser test (tests/test_inbox_browser.py) needs Debian's chromium and its
# chromedriver; never a browser download.  As root we install them; otherwise
# we say what is missing and the test names it too.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  log=$$(mktemp); \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q chromium chromium-driver; } >"$$log" 2>&1 \
	    || { cat "$$log"; rm -f "$$log"; exit 1; }; rm -f "$$log"; \
	else echo "make browser: /usr/bin/chromium or /usr/bin/chromedriver missing;" \
	  "run 'apt-get install chromium chromium-driver' as root" >&2; fi

demo: venv
	$(BIN)/python tools/demo.py

trial: venv browser
	$(BIN)/trial --temp-directory=$(VENV)/_trial_temp tests

lint: venv
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: venv
	$(BIN)/mypy smtptut tests tools bench

test: venv lint typecheck trial

bench: venv
	bash bench/run

clean:
	rm -rf $(VENV) _trial_temp .mypy_cache .ruff_cache tests/js/node_modules
