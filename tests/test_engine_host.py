"""benchmarks/engines/host.py, which hosts a candidate CPU engine in its own venv for
bench_cpu_engine_candidates.py: letter mode sums each letter's spellings as the backends do, batches
as asked, and replies one JSON line per request. The engine here is a small numpy model (the real
candidates, OpenVINO and ONNX Runtime GenAI, install only in venvs of their own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOST = ROOT / "benchmarks" / "engines" / "host.py"

ENGINE = """
import numpy as np

class Engine:
    name, weights = "numpy 1", "float64"

    def __init__(self, folder, threads):
        self.calls = []

    def next_token_logprobs(self, prompts):
        # a row's next-token distribution over 8 tokens depends on its prompt's length only
        z = np.array([[float((len(p) * (t + 1)) % 5) for t in range(8)] for p in prompts])
        open("calls.txt", "a").write(f"{len(prompts)}\\n")
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    def generate(self, prompts, max_new_tokens, temperature, top_p, seed):
        return [list(range(min(max_new_tokens, len(p)))) for p in prompts]

    def close(self):
        pass
"""


def test_the_host_scores_letters_by_their_spellings_in_the_asked_batches(tmp_path):
    (tmp_path / "numpy_engine.py").write_text(ENGINE)
    prompts = [[1] * n for n in (3, 4, 5, 6, 7)]
    letter_ids = [[0, 1], [2], [3, 4], [5]]  # "A" and " A" are two tokens, as in a real vocabulary
    reqs = [
        {
            "op": "letters",
            "prompts": prompts,
            "n_options": [4, 4, 3, 2, 4],
            "letter_ids": letter_ids,
            "batch": 2,
        },
        {
            "op": "generate",
            "prompts": prompts,
            "batch": 4,
            "max_new_tokens": 5,
            "temperature": 0.8,
            "top_p": 0.9,
            "seed": 0,
        },
    ]
    res = subprocess.run(
        [sys.executable, str(HOST), "numpy_engine", "unused-folder", "1"],
        input="".join(json.dumps(r) + "\n" for r in reqs),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    hello, letters, gen = (json.loads(line) for line in res.stdout.splitlines())
    assert hello["name"] == "numpy 1" and hello["load_seconds"] >= 0
    for p, k, got in zip(prompts, [4, 4, 3, 2, 4], letters["letters"]):
        z = np.array([float((len(p) * (t + 1)) % 5) for t in range(8)])
        logp = z - np.log(np.exp(z).sum())
        want = [np.log(np.exp(logp[ids]).sum()) for ids in letter_ids[:k]]
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert (tmp_path / "calls.txt").read_text().split() == ["2", "2", "1"]  # batches of 2, as asked
    assert gen["tokens"] == 3 + 4 + 5 + 5 + 5 and gen["seconds"] >= 0
