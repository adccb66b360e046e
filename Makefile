# rgd: two commands on a fresh machine with Python 3.11+:
#   make run    install into .venv, run the workflow on the embedded default, print the summary
#   make test   install into .venv, run the test suite
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
# pip on some machines prints one warning per missing local index folder; keep the log readable
PIPQUIET := grep -v "is ignored: it is neither a file nor a directory" || true
STAMP := $(VENV)/.rgd-installed

.PHONY: venv run test lint bench clean dry-run report archive

venv: $(STAMP)

$(STAMP): requirements/cpu.txt requirements/cpu-nodeps.txt requirements/cpu.lock.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --progress-bar off -r requirements/cpu.txt -c requirements/cpu.lock.txt 2>&1 | $(PIPQUIET)
	$(BIN)/python -m pip install -q --progress-bar off --no-deps -r requirements/cpu-nodeps.txt 2>&1 | $(PIPQUIET)
	$(BIN)/python -m pip install -q --progress-bar off --no-deps -e . 2>&1 | $(PIPQUIET)
	@$(BIN)/python -c "import torch, transformers, sentence_transformers, snakemake, rgd" 
	@touch $@

run: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES)
	@echo; cat results/tables/summary.md

dry-run: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake -n

test: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

clean:
	rm -rf results .snakemake
