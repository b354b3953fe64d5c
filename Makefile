# The two commands in the README: `make run` and `make test`. Everything else is set up from here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint typecheck system venv clean opa-lib

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

test: $(STAMP) typecheck system opa-lib
	$(BIN)/python -m pytest -q

lint: $(STAMP) typecheck
	$(BIN)/ruff check .

# mypy, configured in pyproject.toml (strict on the core: contracts pdp policy provenance keymgmt;
# standard elsewhere), on every package and the benchmarks. What they import from outside TYPED (the
# tests' helpers) is read for its types, not reported on (--follow-imports=silent); `.venv/bin/mypy` alone
# checks the same files.
TYPED := contracts pdp policy provenance keymgmt siem_rules exchange gateway server console demo cli benchmarks
typecheck: $(STAMP)
	$(BIN)/mypy --follow-imports=silent $(addprefix -p ,$(TYPED))

bench: $(STAMP) opa-lib
	ZTCP_NEED_WRK=1 ./scripts/install-system-deps.sh
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
