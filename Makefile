# The project's commands. `make test` installs, starts the local stack and runs pytest.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_POSTGRES_URL ?= postgresql+psycopg2://wado:wado@127.0.0.1:5432/wado_dagster

.PHONY: install up down status test lint format dev

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

up: install
	bash stack/up.sh

down:
	bash stack/down.sh

status:
	bash stack/status.sh

test: up
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
