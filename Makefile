# The two commands in the README: `make run` and `make test`. Everything else is set up from here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint system venv clean opa-lib

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

system:
	./scripts/install-system-deps.sh

# OPA v1 itself (the Go library), for the conformance tests and the engine benchmark: the pinned
# wheel, SHA-256 checked, unpacked into the venv (it is tagged for Python 3.14, so not pip-installed).
opa-lib: $(STAMP)
	./scripts/install-opa-lib.sh $(VENV)/opa-golib $(BIN)/python

run: $(STAMP)
	$(BIN)/ztcp serve

test: $(STAMP) system opa-lib
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP) opa-lib
	ZTCP_NEED_WRK=1 ./scripts/install-system-deps.sh
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
