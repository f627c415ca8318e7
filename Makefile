# stormwatch — the two set-up commands are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-demo
DEMO_DB ?= var/demo.duckdb
DEMO_PORT ?= 8080

.PHONY: install install-dev demo test lint bench clean

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The compiled iptables scanner (setup.py) is optional for users (no C compiler: the SQL path
# reads instead) but required for the tests, which check it was built from the current source.
NATIVE := setup.py $(wildcard src/stormwatch/ingest/_*.c src/stormwatch/ingest/_*.h)

$(RUN_STAMP): pyproject.toml $(NATIVE) | $(VENV)/bin/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml $(NATIVE) | $(VENV)/bin/python
	rm -f src/stormwatch/ingest/_netfilter.*.so
	$(BIN)/pip install -q -e '.[dev]'
	@ls src/stormwatch/ingest/_netfilter.*.so >/dev/null 2>&1 || { echo "the compiled scanner did not build: install gcc and python3-dev (see .ci/run)" >&2; exit 1; }
	touch $@ $(RUN_STAMP)

$(DEMO_STAMP): pyproject.toml $(NATIVE) | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[demo]'
	touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)
install-dev: $(DEV_STAMP)

## make demo: create the environment, install (with impacket, the bots' client), run the main job end to end,
## then serve the dashboard on http://127.0.0.1:$(DEMO_PORT)/ until Ctrl-C
demo: $(DEMO_STAMP)
	$(BIN)/stormwatch demo --db $(DEMO_DB) --workdir var/demo --serve --port $(DEMO_PORT)

## make test: lint, type-check, then the test suite
test: $(DEV_STAMP) lint
	$(BIN)/pytest -q

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

## make bench: the benchmarks (see bench/README.md); BENCH_ARGS passes options
bench: $(DEV_STAMP)
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
