# Two commands matter: `make demo` runs a whole exercise, `make test` the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export NO_PROXY := 127.0.0.1,localhost
export no_proxy := 127.0.0.1,localhost

.PHONY: test test-future demo bench soak chaos-soak mutation lint typecheck install clean browser openapi axe

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check dispatcher channels tests

typecheck: $(STAMP)
	$(BIN)/mypy dispatcher channels

# Browser tests drive Debian's Chromium (never a browser Playwright downloads).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is not installed: browser tests will skip (and fail in CI)"; fi; }

# axe-core for the browser tests' accessibility checks, from the npm registry at the version
# tests/browser/axe/package-lock.json pins (node and npm from Debian, at /usr/bin).
AXE_DIR := tests/browser/axe
AXE := $(AXE_DIR)/node_modules/axe-core/axe.min.js
$(AXE): $(AXE_DIR)/package-lock.json
	cd $(AXE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(AXE)

axe: $(AXE)

# Four test processes (pytest-xdist) on the two cores, a file each at a time: the suite
# waits on servers, subprocesses, sleeps and browsers more than it computes (with two
# processes it used 658 s of CPU in a 1,213 s run: a quarter of the two cores), and
# the longest files go out first (tests/scheduling.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 4
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP) lint browser axe
	$(PYTEST) tests

# The suite with every clock of the test process a year ahead (SQLite only: a PostgreSQL
# server's clock cannot be moved); a date that would expire in the code or the sample
# data fails here first. FUTURE_DAYS=730 looks further.
FUTURE_DAYS ?= 365
test-future: $(STAMP) browser axe
	ALN_TEST_CLOCK_SHIFT_DAYS=$(FUTURE_DAYS) $(PYTEST) tests

demo: $(STAMP)
	$(BIN)/aln demo

# One process per benchmark file: peak memory is per process, and one benchmark's
# leftovers must not count against the next.
# Every benchmark runs, even after one misses its target (the whole table comes from one
# run); `make bench` fails at the end naming those that missed.
bench: $(STAMP)
	@missed=""; for f in tests/bench/bench_*.py; do \
	  $(BIN)/python -m pytest -q -s $$f -o norecursedirs= -o python_files="bench_*.py" -p no:cacheprovider \
	    || missed="$$missed $$f"; \
	done; \
	if [ -n "$$missed" ]; then echo "missed a target or failed:$$missed"; exit 1; fi

# The chaos soak: SIGKILL aln serve/worker at random under traffic, restart within a
# second, check nothing was lost (ALN_SOAK_CYCLES per database, default 50, about 5
# minutes each; PostgreSQL too when ALN_TEST_POSTGRES_URL is set). One JSON line of
# figures per database. `make soak` runs it before the model soak.
chaos-soak: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/soak -o norecursedirs= -p no:cacheprovider

# The model test (tests/model) with many more examples than `make test` runs: about 45
# minutes on SQLite (2 examples/s), plus ~10 on PostgreSQL when ALN_TEST_POSTGRES_URL is set.
SOAK_EXAMPLES ?= 5000
SOAK_PG_EXAMPLES ?= 500
# Then the officer API's fuzz test (tests/integration/test_api_fuzz.py) with many more
# examples and stateful steps than `make test` gives it: about 10 minutes.
SOAK_FUZZ_EXAMPLES ?= 500
SOAK_FUZZ_STEPS ?= 100
soak: $(STAMP) chaos-soak
	ALN_MODEL_EXAMPLES=$(SOAK_EXAMPLES) ALN_MODEL_PG_EXAMPLES=$(SOAK_PG_EXAMPLES) \
	  $(BIN)/python -m pytest -q -s tests/model -p no:cacheprovider
	ALN_FUZZ_EXAMPLES=$(SOAK_FUZZ_EXAMPLES) ALN_FUZZ_STEPS=$(SOAK_FUZZ_STEPS) \
	  $(BIN)/python -m pytest -q -s tests/integration/test_api_fuzz.py -p no:cacheprovider \
	  -o timeout=3600

# After a deliberate change to the officer API: write docs/openapi.json from the served
# schema (tests/web/test_api_contract.py fails while the two differ), then commit it.
openapi: $(STAMP)
	ALN_WRITE_OPENAPI=1 $(BIN)/python -m pytest -q tests/web/test_api_contract.py \
	  -k "served_schema and sqlite" -p no:cacheprovider

# Mutation testing of lifecycle, acks, the escalation policy and the retry policy (not part of
# `make test`; docs/mutation.md). A fresh copy every time: mutmut's cache would keep
# verdicts of tests since changed. SQLite only: the PostgreSQL variants are deselected.
mutation: $(STAMP)
	rm -rf mutants && mkdir mutants
	env -u ALN_TEST_POSTGRES_URL $(BIN)/mutmut run --max-children 2 > mutants/run.log 2>&1 \
	  || { tail -c 2000 mutants/run.log; exit 1; }
	@tr '\r' '\n' < mutants/run.log | grep -v '^$$' | tail -n 1
	$(BIN)/python scripts/mutation_report.py

clean:
	rm -rf mutants
	rm -rf $(VENV) aln.db aln.db-* .aln-secret-key $(AXE_DIR)/node_modules
