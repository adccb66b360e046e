"""Cold start of `rgd`: every subcommand's `--help`, and a real `rgd route` of 500 questions with
given embeddings (a CASCAL router trained on 1,500 questions, 64-d, 6 models), as the user types it.

Each command is a fresh process (the wall time includes the interpreter, imports and argument
parsing; the median of several runs is reported). A second run of each records which heavy
libraries it imported: none of torch, transformers, scikit-learn, sentence-transformers, vLLM may
load for `--help`, nor for `rgd route` with given embeddings. Same-run baselines: the same `rgd
route` with scikit-learn imported first (what routing paid when the router module imported it),
which gives the ratio, and the floor every command pays (the interpreter with numpy). Exits 1 when
`rgd route` takes more than 0.5 s or a heavy library is imported where it is not used.

    .venv/bin/python benchmarks/bench_startup.py [--out result.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import finish as finish_result
from benchlib import median, result

HEAVY = ("torch", "transformers", "sklearn", "sentence_transformers", "vllm")
TARGET_ROUTE_S = 0.5
# Runs `rgd` in this process and prints the heavy modules it imported (last line of stdout).
PROBE = (
    "import sys\nfrom rgd.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    f"print('\\nHEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
)


def rgd_command() -> list[str]:
    """`rgd` as installed next to this interpreter (the console script), else `python -m rgd.cli`."""
    script = Path(sys.executable).parent / "rgd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rgd.cli"]


def wall(cmd: list[str], runs: int, env: dict) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t0)
    return round(median(times), 4)


def heavy_imports(args: list[str], env: dict) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, check=True
    )
    line = out.stdout.strip().splitlines()[-1]
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


def workload(d: Path, n_train=1500, n_test=500, dim=64, n_models=6, seed=0) -> list[str]:
    """Questions, embeddings and a trained CASCAL router in d; returns the `rgd route` arguments."""
    from rgd import routers
    from rgd.io import dumps, save_npz, write_jsonl

    rng = np.random.default_rng(seed)
    experts = [f"m{j}" for j in range(n_models)]
    spec = {"kind": "sentence-transformers", "package": "not-needed-with-given-embeddings"}
    for split, n in (("train", n_train), ("test", n_test)):
        qs = [
            {
                "id": f"{split}-{i}",
                "category": f"subject {i % 5}",
                "question": f"Question {i}?",
                "options": ["a", "b", "c", "d"],
            }
            for i in range(n)
        ]
        write_jsonl(d / f"{split}.questions.jsonl", qs)
        X = (np.eye(dim)[rng.integers(0, 10, n)] * 2 + rng.normal(size=(n, dim))).astype(np.float32)
        save_npz(d / f"{split}.npz", ids=np.array([q["id"] for q in qs]), X=X, embedder=np.array(dumps(spec)))
        if split == "train":
            data = routers.TrainingSet(
                X,
                experts,
                [q["category"] for q in qs],
                rng.integers(0, 4, (n, n_models)),
                rng.uniform(0.05, 0.95, (n, n_models)),
                None,
                [q["id"] for q in qs],
                spec,
            )
            router = routers.train("cascal", {}, 0, data)
            routers.save(router, "cascal", d / "router", experts, spec, {"n": n})
    return [
        "route",
        "--router",
        str(d / "router"),
        "--questions",
        str(d / "test.questions.jsonl"),
        "--embeddings",
        str(d / "test.npz"),
        "--out",
        str(d / "routes.jsonl"),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the result as JSON here (shape: benchmarks/benchlib.py)")
    ap.add_argument("--runs", type=int, default=5, help="runs per timed command (median)")
    ap.add_argument("--quick", action="store_true", help="fewer runs, fewer subcommands timed")
    args = ap.parse_args(argv)
    runs = 2 if args.quick else args.runs

    from rgd.cli import build_parser

    steps = list(
        next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rgd = rgd_command()
    d = Path(tempfile.mkdtemp(prefix="rgd-bench-startup-"))
    try:
        route = workload(d)
        t0 = time.perf_counter()
        subprocess.run(rgd + route, env=env, check=True, capture_output=True)
        first = round(time.perf_counter() - t0, 4)
        route_s = wall(rgd + route, runs, env)
        with_sklearn = [
            sys.executable,
            "-c",
            "import sklearn.cluster, threadpoolctl, sys\nfrom rgd.cli import main\n"
            "sys.exit(main(sys.argv[1:]))",
            *route,
        ]
        sklearn_s = wall(with_sklearn, runs, env)
        floor_s = wall([sys.executable, "-c", "import numpy"], runs, env)
        route_heavy = heavy_imports(route, env)
        routed = sum(1 for _ in open(d / "routes.jsonl"))
        timed = steps[:4] + ["route", "train", "embed"] if args.quick else steps
        help_s = {s: wall(rgd + [s, "--help"], max(1, runs // 2), env) for s in timed}
        help_heavy = {s: heavy_imports([s, "--help"], env) for s in steps}
    finally:
        shutil.rmtree(d, ignore_errors=True)

    fig = {
        "route_questions": routed,
        "route_s": route_s,
        "route_first_s": first,
        "route_with_sklearn_import_s": sklearn_s,
        "python_numpy_floor_s": floor_s,
        "route_heavy_imports": route_heavy,
        "help_s": help_s,
        "help_max_s": max(help_s.values()),
        "help_heavy_imports": {s: v for s, v in help_heavy.items() if v},
        "runs": runs,
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(rgd)),
    }
    missed = []
    if route_s > TARGET_ROUTE_S:
        missed.append(f"rgd route {route_s:.2f} s > {TARGET_ROUTE_S} s")
    if route_heavy:
        missed.append(f"rgd route imported {', '.join(route_heavy)}")
    for s, mods in fig["help_heavy_imports"].items():
        missed.append(f"rgd {s} --help imported {', '.join(mods)}")
    if routed != 500:
        missed.append(f"rgd route wrote {routed} routes, expected 500")
    print(json.dumps(fig, indent=2))
    res = result(
        "startup",
        f"rgd route (500 questions, given embeddings) {route_s:.2f} s wall; --help of {len(help_s)} "
        "subcommands "
        f"<= {fig['help_max_s']:.2f} s; floor (python + numpy) {floor_s:.2f} s",
        f"the same rgd route with scikit-learn imported first: {sklearn_s:.2f} s",
        fig,
        sklearn_s / route_s,
        "route with the scikit-learn import / route wall time",
        f"rgd route <= {TARGET_ROUTE_S} s; no {', '.join(HEAVY)} in --help or in route",
        missed,
        args.quick,
    )
    return finish_result(res, args.out)


if __name__ == "__main__":
    sys.exit(main())
