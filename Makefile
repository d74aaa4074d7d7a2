# Two entry points for a fresh machine: `make demo` (the main job on the embedded default data)
# and `make test` (export check, notebook tests, pytest). Both create and fill .venv when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gzh-installed
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test export-check nbtest pytest readme docs-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]" $(TORCH)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gzh demo --out demo-out

test: $(STAMP) export-check nbtest pytest

export-check: $(STAMP)
	$(BIN)/nbdev-export && git diff --exit-code --stat -- gzh || { echo "nbdev-export changed gzh/: export the notebooks and commit gzh/"; exit 1; }

nbtest: $(STAMP)
	$(BIN)/nbdev-test

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

readme: $(STAMP)
	$(BIN)/python tools/readme.py

docs-check: $(STAMP)
	BIN=$(BIN) tools/docs_check.sh
