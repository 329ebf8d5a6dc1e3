# Two commands on a fresh machine (Python 3.11):
#   make run    set up .venv and run the whole pipeline on config.yaml
#   make test   set up .venv, lint, and run the test suite
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.koqa-installed

.PHONY: run test lint

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $@

run: $(STAMP)
	$(BIN)/snakemake --cores all

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint

test: lint
	$(BIN)/python -m pytest
