# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck unit demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check whatsapp_campaigns tests bench
	$(BIN)/ruff format --check whatsapp_campaigns tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

demo: venv
	$(BIN)/campaigns demo

bench: venv
	$(BIN)/python bench/campaign_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache campaigns.db*
