# Two commands matter: `make demo` runs a whole exercise, `make test` the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export NO_PROXY := 127.0.0.1,localhost
export no_proxy := 127.0.0.1,localhost

.PHONY: test demo bench lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check dispatcher channels tests

test: $(STAMP) lint
	$(BIN)/python -m pytest -q tests

DEMO_DIR := .aln-demo

demo: $(STAMP)
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	cd $(DEMO_DIR) && ../$(BIN)/aln roster import ../config/rosters/mexico-city.csv
	cd $(DEMO_DIR) && ../$(BIN)/aln roster gaps

bench: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/bench -p no:randomly --override-ini="norecursedirs="

clean:
	rm -rf $(VENV) aln.db aln.db-* .aln-secret-key
