"""Hosts one candidate engine in its own virtual environment for bench_cpu_engine_candidates.py.

Runs with the engine's venv python (numpy and the engine only; rgd is not importable there):

    python benchmarks/engines/host.py MODULE MODEL_FOLDER THREADS

MODULE names a file of this folder defining `Engine` (openvino_engine, ortgenai_engine). Requests
and replies are one JSON object per line on stdin/stdout; every reply carries the seconds the
engine itself took, so process start, model load and the pipe are never timed.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np


def letters(engine, req: dict) -> dict:
    """Letter mode as rgd scores it: per prompt, log P(letter) summed over the letter's spellings,
    for its first n options; the prompts go to the engine in batches of `batch`."""
    prompts, n_opt, ids, batch = req["prompts"], req["n_options"], req["letter_ids"], req["batch"]
    out, seconds = [], 0.0
    for start in range(0, len(prompts), batch):
        t0 = time.perf_counter()
        logp = engine.next_token_logprobs(prompts[start : start + batch])
        seconds += time.perf_counter() - t0
        for row, k in zip(logp, n_opt[start : start + batch]):
            out.append([float(np.logaddexp.reduce(row[ids[j]].astype(np.float64))) for j in range(k)])
    return {"letters": out, "seconds": seconds}


def generate(engine, req: dict) -> dict:
    prompts, batch, seconds, tokens = req["prompts"], req["batch"], 0.0, 0
    for start in range(0, len(prompts), batch):
        t0 = time.perf_counter()
        rows = prompts[start : start + batch]
        got = engine.generate(rows, req["max_new_tokens"], req["temperature"], req["top_p"], req["seed"])
        seconds += time.perf_counter() - t0
        tokens += sum(len(g) for g in got)
    return {"tokens": tokens, "seconds": seconds}


def main() -> int:
    module, folder, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.path.insert(0, str(Path(__file__).parent))
    t0 = time.perf_counter()
    engine = importlib.import_module(module).Engine(folder, threads)
    hello = {"name": engine.name, "weights": engine.weights, "load_seconds": time.perf_counter() - t0}
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        reply = {"letters": letters, "generate": generate}[req["op"]](engine, req)
        print(json.dumps(reply), flush=True)
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
