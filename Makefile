# The project's commands. `make test` installs, starts the local stack and runs pytest.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DAGSTER_STORAGE_DEFAULT := postgresql+psycopg2://wado:wado@127.0.0.1:15432/wado_dagster?sslmode=disable
export DAGSTER_POSTGRES_URL ?= $(DAGSTER_STORAGE_DEFAULT)

.PHONY: install up down status test test-busy lint format dev validate demo browser

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || { bash stack/python.sh $(PYTHON) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# `source .venv/bin/activate` gives Dagster commands the local stack's storage
	# unless DAGSTER_POSTGRES_URL is already set (not a .env file: Dagster lets a
	# .env override the environment).
	sed -i '/DAGSTER_POSTGRES_URL/d' $(BIN)/activate
	echo 'export DAGSTER_POSTGRES_URL="$${DAGSTER_POSTGRES_URL:-$(DAGSTER_STORAGE_DEFAULT)}"' >> $(BIN)/activate
	touch $@

up: install
	bash stack/up.sh

down:
	bash stack/down.sh

status:
	bash stack/status.sh

test: up browser
	$(BIN)/pytest $(PYTEST_ARGS)

# The suite three times in a row with every core kept busy (CI machines are shared).
test-busy: up browser
	bash stack/busy-test.sh 3

# Debian's Chromium, for the UI screenshots of wado_pipeline_tests/test_ui.py.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Dagster UI and daemon on http://127.0.0.1:3000 with a persistent DAGSTER_HOME
# (run history survives restarts) and the sensor running.
DAGSTER_HOME_DIR := $(CURDIR)/.dagster_home
dev: up
	$(BIN)/wado-pipeline init-db  # as the tables' owner: the runs only read and upsert
	mkdir -p $(DAGSTER_HOME_DIR)
	cp dagster.yaml $(DAGSTER_HOME_DIR)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Dagster reads the project's dagster.yaml here, whose storage (the stack's) leaves its
# tables to init-db.
validate: up
	$(BIN)/wado-pipeline init-db --only dagster
	$(BIN)/dagster definitions validate -w workspace.yaml

# The whole pipeline with data flowing, in the Dagster UI: stack, sample archive (synthetic
# CT/MR studies with non-ASCII names, plus pydicom's corpus) published as the receiver
# would, then `dagster dev` with the sensor running. Ctrl-C stops Dagster; `make down`
# stops the stack. The archive is published once (marker in .stack/).
DEMO_TENANT := demo-hospital
demo: up
	@if [ ! -f .stack/demo-published ]; then \
	  $(BIN)/wado-pipeline produce --synthetic 1200 --seed demo --tenant $(DEMO_TENANT) && \
	  $(BIN)/wado-pipeline produce "$$($(BIN)/python -c 'import os, pydicom.data as d; print(os.path.dirname(d.get_testdata_file("CT_small.dcm")))')" --tenant $(DEMO_TENANT) && \
	  touch .stack/demo-published; fi
	$(BIN)/wado-pipeline init-db  # as the tables' owner: the runs only read and upsert
	mkdir -p $(DAGSTER_HOME_DIR)
	cp dagster.yaml $(DAGSTER_HOME_DIR)/dagster.yaml
	@echo
	@echo "  Dagster UI:  http://127.0.0.1:3000"
	@echo "  Look at:     Assets > ingest (lineage, freshness, checks) · Runs (one per batch)"
	@echo "               Automation > storage_topic_sensor (ticks and cursor)"
	@echo "  Progress:    .venv/bin/wado-pipeline lag   (another terminal)"
	@echo "  Stop:        Ctrl-C here, then 'make down'"
	@echo
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000
