# EyeNet: the README's two commands are `make demo` and `make test`; both set everything up themselves.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.eyenet-installed
DATA ?=
OUT ?= results

.PHONY: demo test install sync-check nbtest pytest docs docs-test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Reinstall only when the project's metadata changes (pip takes torch from this machine's disk when it can).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: the whole pipeline on the embedded synthetic sample (or on DATA=...), results in $(OUT)/
demo: install
	$(BIN)/eyenet-demo --out $(OUT) $(if $(DATA),--data $(DATA),)

## All tests: notebooks and library in sync, every notebook, the pytest suite, the docs site
test: install sync-check nbtest pytest docs-test

sync-check: install
	@bash tools/check_sync.sh $(BIN)

nbtest: install
	$(BIN)/nbdev-test --n-workers 2 --timing

pytest: install
	$(BIN)/python -m pytest -q tests

docs: install
	$(BIN)/python tools/build_docs.py

docs-test: docs
	bash tools/docs_test.sh $(BIN)

bench: install
	$(BIN)/python bench/preprocess.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/serve.py

clean:
	rm -rf _docs _proc results
