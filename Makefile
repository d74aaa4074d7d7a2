# Two entry points for a fresh machine: `make demo` (the main job on the embedded default data)
# and `make test` (export check, notebook tests, pytest). Both create and fill .venv when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gzh-installed
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test export-check nbtest pytest readme docs-check

# The stamp holds pyproject.toml's hash, not its time: nbdev-export rewrites the file unchanged, which must not reinstall.
setup:
	@sum=$$(sha1sum pyproject.toml | cut -c1-40); \
	if [ "$$(cat $(STAMP) 2>/dev/null)" != "$$sum" ]; then \
	  set -e; test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install -q --upgrade pip; \
	  $(BIN)/python -m pip install -q -e ".[dev]" $(TORCH); \
	  echo "$$sum" > $(STAMP); \
	fi

demo: setup
	$(BIN)/gzh demo --out demo-out

test: setup export-check nbtest pytest

export-check: setup
	$(BIN)/nbdev-export && git diff --exit-code --stat -- gzh || { echo "nbdev-export changed gzh/: export the notebooks and commit gzh/"; exit 1; }

nbtest: setup
	$(BIN)/nbdev-test

pytest: setup
	$(BIN)/python -m pytest -q

readme: setup
	$(BIN)/python tools/readme.py

docs-check: setup
	BIN=$(BIN) tools/docs_check.sh
