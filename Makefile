# TRD Bot developer commands. The two that matter: `make demo` and `make test` (see docs/ci.md).
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# The venv's interpreter: the system's /usr/bin/python3.11 where it has venv (Debian links it statically and builds it
# with profile-guided and link-time optimisation: the backtest runs ~20-25 % faster than on a shared-library build such
# as pyenv's default), else python3.11 or python3 from PATH. `make PYTHON=...` chooses another.
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' 2>/dev/null && echo /usr/bin/python3.11 \
                  || command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
# Stamps live inside the venv: deleting .venv forgets them, editing pyproject.toml reinstalls.
STAMP_RUN := $(VENV)/.stamp-run
STAMP_TEST := $(VENV)/.stamp-test
LINT_PATHS := $(wildcard app tests benchmarks)
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help venv install install-test precompile demo serve test lint typecheck importlint checks pytest \
        test-sqlite test-postgres pg-start pg-stop chaos clean

help:
	@echo "make demo          install into $(VENV) and start the demo (DEMO_ARGS=... passes options)"
	@echo "make test          install test extras, then ruff, mypy, import-linter, pytest on SQLite"
	@echo "                   and, when TEST_POSTGRES_URL is set, pytest again on PostgreSQL"
	@echo "make lint | typecheck | importlint | test-sqlite | test-postgres"
	@echo "make pg-start / pg-stop   throwaway local PostgreSQL (scripts/postgres.sh)"
	@echo "make chaos         the chaos soak: CHAOS_KILLS (200) kill -9s of the live bot, CHAOS_FAULTS (2000) faults,"
	@echo "                   CHAOS_SEED (random, printed), CHAOS_MAX_WALL_S (3600), CHAOS_DIR (a temporary directory)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 needed, got " + sys.version)'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(BIN)/python

# After installing, the backtester's numba loops are compiled into numba's on-disk cache (app/indicators/__pycache__),
# so the first backtest does not stall ~20 s compiling them; later processes load them in well under a second.
$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	$(BIN)/python -m app.indicators.precompile
	@touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[test]'
	$(BIN)/python -m app.indicators.precompile
	@touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)

# Again by hand (after editing app/indicators/kernels.py, or on another CPU; a no-op while the cache is current).
precompile: $(STAMP_RUN)
	$(BIN)/python -m app.indicators.precompile

install-test: $(STAMP_TEST)

demo: $(STAMP_RUN)
	$(BIN)/trdbot demo $(DEMO_ARGS)

serve: $(STAMP_RUN)
	$(BIN)/trdbot serve

lint: $(STAMP_TEST)
	$(BIN)/ruff check $(LINT_PATHS)

typecheck: $(STAMP_TEST)
	$(BIN)/mypy app

importlint: $(STAMP_TEST)
	$(BIN)/lint-imports

# Static checks in a fixed order; the first failure stops make.
checks: lint typecheck importlint

test-sqlite: $(STAMP_TEST)
	VENV=$(VENV) scripts/pytest.sh sqlite $(PYTEST_ARGS)

test-postgres: $(STAMP_TEST)
	VENV=$(VENV) scripts/pytest.sh postgres $(PYTEST_ARGS)

# Sequential on purpose (even under make -j): checks first, then SQLite, then PostgreSQL if configured.
test: $(STAMP_TEST)
	@$(MAKE) --no-print-directory checks
	VENV=$(VENV) scripts/pytest.sh sqlite $(PYTEST_ARGS)
	@if [ -n "$${TEST_POSTGRES_URL:-}" ]; then \
		VENV=$(VENV) scripts/pytest.sh postgres $(PYTEST_ARGS); \
	else \
		echo "TEST_POSTGRES_URL not set: PostgreSQL run skipped (.ci/run sets it; see docs/ci.md)"; \
	fi

pytest: test-sqlite

# The long chaos soak (tests/chaos/soak.py); `make test` runs the short one (tests/chaos/) with the rest.
chaos: $(STAMP_TEST)
	PYTHONPATH=. $(BIN)/python -m tests.chaos.soak

pg-start:
	scripts/postgres.sh start

pg-stop:
	scripts/postgres.sh stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
