#!/usr/bin/env bash
# Remake data/mmlu-pro-recorded/ (the committed real-answer benchmark) from the MMLU-Pro authors'
# published per-question outputs of 30 models: `make recorded-data`, or
#   scripts/make-recorded-data.sh SRC_DIR [OUT_DIR]
# SRC_DIR holds the files byte for byte as published (see data/mmlu-pro-recorded/README.md) and
# their SHA256SUMS; every file listed there is imported, and each must match its digest. Needs
# `rgd` on PATH (or RGD=/path/to/rgd). The output is byte-identical from run to run.
set -euo pipefail
src=${1:?usage: $0 SRC_DIR [OUT_DIR]}
out=${2:-data/mmlu-pro-recorded}
rgd=${RGD:-rgd}
sums="$src/SHA256SUMS"
test -f "$sums" || { echo "$0: $sums not found" >&2; exit 2; }

inputs=()
while read -r _digest name; do
    case "$name" in *.zip | *.tar.xz) inputs+=("$src/${name#\*}") ;; esac
done <"$sums"
test "${#inputs[@]}" -eq 30 || { echo "$0: expected 30 output files in $sums, got ${#inputs[@]}" >&2; exit 2; }

"$rgd" import-responses --format mmlu-pro "${inputs[@]}" --out-dir "$out" --sums "$sums" \
    --rename gpt4o-2024-05-13=gpt-4o-2024-05-13 \
    --gold-from jamba-1.5-large \
    --gold-note "newest revision and complete (12,032 questions; the gemini-1.5 files, of the same revision, lack 20 (flash) and 12 (pro)): wherever another file differs from the oldest revision (21 files), it has jamba's version, and jamba's adds 30 key corrections (one with corrected options), 3 option fixes and 1 question fix that only the gemini files share" \
    --source '{"repository": "https://github.com/TIGER-AI-Lab/MMLU-Pro", "commits": {"eval_results/ (model_outputs_*_5shots.zip)": "f418b116db00b065c2aea046518d8fcf74d39872", "eval_results/gpt4o/ (gpt4o-2024-05-13_results.tar.xz, packed from that folder)": "ff991b5b7f14a383fd41da3987447ab6c08bf138"}, "dataset": "TIGER-Lab/MMLU-Pro test split (MIT)", "setting": "5-shot chain-of-thought, greedy"}'
