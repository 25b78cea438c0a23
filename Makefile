# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: run test lint typecheck browser screenshots unit bench definitions clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## make run: set up, load the demo clinic into ./data/fhir.db if empty, serve on :8080
run: $(STAMP)
	$(BIN)/fhir-server serve --host $(HOST) --port $(PORT) --demo

## make test: set up and run the whole suite (lint, types, import layers, pytest; the web app's browser tests need Debian's chromium, installed here when missing)
test: $(STAMP) lint typecheck browser
	$(BIN)/lint-imports
	$(BIN)/pytest -q

## make screenshots: retake the README's screenshots of the web app (docs/screenshots)
screenshots: $(STAMP) browser
	PORTAL_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/portal

## make browser: Debian's chromium for the browser tests (Playwright drives it; no browser download)
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy bench  # the benchmark scripts: a broken import shows here, not in a bench run

unit: $(STAMP)
	$(BIN)/pytest -q -x

## make bench: REST and booking throughput/latency, against a bare Starlette ceiling; Bulk Data export throughput and memory (needs ../shared/data)
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/rest.py
	$(BIN)/python bench/booking.py
	$(BIN)/python bench/export.py

## make definitions: regenerate resources/search_parameters.json from ../shared/data/hl7-r4
definitions: $(STAMP)
	$(BIN)/python scripts/generate_definitions.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
