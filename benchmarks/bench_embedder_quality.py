"""The embedder runtimes (ONNX Runtime fp32 and int8, static Model2Vec) against PyTorch fp32: do
the vectors and CASCAL's picks stay the same?

Question sets: the embedded default's 315 real MMLU questions (config/config.yaml: its 7 subjects,
45 each, seed 0) and the cascal-mmlu benchmark's 4,560 (bench_cascal_mmlu.py: 57 subjects x 80).
Answers are planted as in bench_cascal_mmlu.py (no offline machine answers thousands of
questions): the embedded default's 4 models are told its 7 subjects, the benchmark's 6 models
its 14 routing subjects. Each of `--workloads` seeded draws (skills, answers, a 60/40 split) is
trained and routed with each runtime's vectors, with k-means seeds 0, 1, 2 each.

Figures per runtime and question set: the cosine of each question's vector with PyTorch's (min,
median); the share of test picks (CASCAL top-1) unchanged from PyTorch's, same draw and seed;
the same share when PyTorch's router (same draw and seed) routes the runtime's vectors, which
leaves out how much k-means moves when its training vectors move; top-1 on the test questions
and the paired bootstrap 95% CI (over test questions, 2,000 resamples) of its difference from
PyTorch's. The runtimes are exported once into `--exports`.
Target: the int8 runtime's CI lower bound >= -1 point on the 4,560 questions. Exits 1 when missed.

    nice -n 10 .venv/bin/python benchmarks/bench_embedder_quality.py [--out result.json] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_cascal import SEEDS, plant_answers, plant_skills
from bench_cascal_mmlu import MARGIN, MODELS, OPTIONS, ROUTING_SUBJECTS, TRAIN_FRACTION, paired_ci
from benchlib import ROOT, finish, result, runtime_specs, runtimes

from rgd.cascal import Cascal
from rgd.consensus import consensus_scores
from rgd.embed import Embedder
from rgd.embedded import known_subjects, load_mmlu
from rgd.io import read_yaml
from rgd.routers import TrainingSet

RUNTIMES = runtimes()


def question_sets(quick: bool) -> dict[str, tuple[list[str], np.ndarray, int, int]]:
    """name -> (questions, MMLU subject per question, routing subjects (0: the MMLU ones), models)."""
    source = read_yaml(ROOT / "config" / "config.yaml")["benchmarks"]["mmlu"]["source"]
    per = 10 if quick else source["per_subject"]
    small, _ = load_mmlu(source["subjects"], source["split"], per, seed=0)
    subjects = known_subjects()[:10] if quick else known_subjects()
    large, _ = load_mmlu(subjects, "test", 20 if quick else 80, seed=0)
    return {
        "embedded default": ([q["question"] for q in small], np.array([q["category"] for q in small]), 0, 4),
        "cascal-mmlu": (
            [q["question"] for q in large],
            np.array([q["category"] for q in large]),
            ROUTING_SUBJECTS,
            MODELS,
        ),
    }


def embed_all(questions: list[str], specs: dict[str, dict], threads: int) -> tuple[dict, dict]:
    """runtime -> (n, d) vectors, runtime -> embedding seconds."""
    X, secs = {}, {}
    for runtime, spec in specs.items():
        embedder = Embedder(spec, threads=threads)
        t0 = time.perf_counter()
        X[runtime] = embedder.encode(questions)
        secs[runtime] = round(time.perf_counter() - t0, 2)
    return X, secs


def plant(subject: np.ndarray, groups: int, models: int, seed: int):
    """A seeded draw: routing subject per question, train and test rows, choices, consensus, correct."""
    rng = np.random.default_rng(seed)
    names, niche = np.unique(subject, return_inverse=True)
    routing = (
        names[niche]
        if groups == 0
        else np.array([f"group {g:02d}" for g in rng.permutation(len(names)) % groups])[niche]
    )
    acc = plant_skills(rng, len(names), models)
    gold, choices, logprobs = plant_answers(rng, acc[niche], OPTIONS)
    order = rng.permutation(len(subject))
    cut = int(TRAIN_FRACTION * len(subject))
    train, test = np.sort(order[:cut]), np.sort(order[cut:])
    consensus = consensus_scores(choices[train], logprobs[train]).scores
    return routing, train, test, choices, consensus, choices[test] == gold[test, None]


def compare(X: dict, subject: np.ndarray, groups: int, models: int, workloads: int) -> dict:
    """Per runtime: cosine with PyTorch's vectors, unchanged picks, top-1 and its paired CI."""
    hits = {r: [] for r in RUNTIMES}
    picks = {r: [] for r in RUNTIMES}
    served = {r: [] for r in RUNTIMES}  # PyTorch's router routing this runtime's vectors
    for seed in range(workloads):
        routing, train, test, choices, consensus, correct = plant(subject, groups, models, seed)
        rows = np.arange(len(test))
        for r in RUNTIMES:
            data = TrainingSet(
                X[r][train],
                [f"model-{j}" for j in range(models)],
                list(routing[train]),
                choices[train],
                consensus,
            )
            for rs in SEEDS:
                pick = Cascal(random_state=rs).fit(data).rank(X[r][test])[0][:, 0]
                picks[r].append(pick)
                hits[r].append(correct[rows, pick])
        for rs in SEEDS:  # the vectors' share of a moved pick, without k-means' own: one router
            data = TrainingSet(
                X["torch"][train],
                [f"model-{j}" for j in range(models)],
                list(routing[train]),
                choices[train],
                consensus,
            )
            router = Cascal(random_state=rs).fit(data)
            for r in RUNTIMES:
                served[r].append(router.rank(X[r][test])[0][:, 0])
    k = len(SEEDS)  # PyTorch against itself under another k-means seed: how stable a pick is at all
    own = [
        np.mean(picks["torch"][w * k + i] == picks["torch"][w * k + j])
        for w in range(workloads)
        for i in range(k)
        for j in range(i + 1, k)
    ]
    out = {"torch_seed_agreement": round(float(np.mean(own)), 4)}
    base = np.concatenate(hits["torch"]).astype(float)
    for r in RUNTIMES:
        cos = np.sum(X[r] * X["torch"], axis=1)
        h = np.concatenate(hits[r]).astype(float)
        same = np.mean(np.concatenate(picks[r]) == np.concatenate(picks["torch"]))
        same_router = np.mean(np.concatenate(served[r]) == np.concatenate(served["torch"]))
        out[r] = {
            "cosine_min": round(float(cos.min()), 4),
            "cosine_median": round(float(np.median(cos)), 4),
            "same_pick": round(float(same), 4),
            "same_pick_same_router": round(float(same_router), 4),
            "top1": round(float(h.mean()), 4),
            "top1_diff_ci95": paired_ci(h - base) if r != "torch" else [0.0, 0.0],
        }
    return out


def table(figures: dict) -> str:
    lines = [
        "| questions | runtime | cosine min | cosine median | same top-1 pick | same pick, PyTorch's router "
        "| top-1 | top-1 - PyTorch's (95% CI, points) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, fig in figures["sets"].items():
        for r, f in fig["runtimes"].items():
            if r == "torch_seed_agreement":
                continue
            lo, hi = f["top1_diff_ci95"]
            diff = (f["top1"] - fig["runtimes"]["torch"]["top1"]) * 100
            ci = "-" if r == "torch" else f"{diff:+.1f} [{lo * 100:+.1f}, {hi * 100:+.1f}]"
            lines.append(
                f"| {name} ({fig['questions']:,}) | {r} | {f['cosine_min']:.4f} | {f['cosine_median']:.4f} | "
                f"{f['same_pick']:.1%} | {f['same_pick_same_router']:.1%} | {f['top1']:.3f} | {ci} |"
            )
    seeds = ", ".join(
        f"{n} {fig['runtimes']['torch_seed_agreement']:.1%}" for n, fig in figures["sets"].items()
    )
    return "\n".join(lines) + f"\n\nPyTorch's own picks under another k-means seed agree on: {seeds}."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=3, help="seeded draws of skills and answers")
    ap.add_argument(
        "--exports", help="the runtimes' exported files (default: exported into a temporary folder)"
    )
    ap.add_argument("--out", help="write the result as JSON here (shape: benchmarks/benchlib.py)")
    ap.add_argument("--quick", action="store_true", help="a few subjects, one draw")
    args = ap.parse_args(argv)
    import torch

    workloads = 1 if args.quick else args.workloads
    threads = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        specs, export_s = runtime_specs(Path(args.exports or tmp), RUNTIMES)
        sets = {}
        for name, (questions, subject, groups, models) in question_sets(args.quick).items():
            X, secs = embed_all(questions, specs, threads)
            sets[name] = {
                "questions": len(questions),
                "embed_s": secs,
                "runtimes": compare(X, subject, groups, models, workloads),
            }
    fig = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": threads,
        "export_s": export_s,
        "workloads": workloads,
        "kmeans_seeds": list(SEEDS),
        "sets": sets,
    }
    print(table(fig))
    int8 = sets["cascal-mmlu"]["runtimes"]["onnx-int8"]
    missed = []
    if int8["top1_diff_ci95"][0] < -MARGIN:
        missed.append(
            f"int8 top-1 minus PyTorch's: 95% CI {int8['top1_diff_ci95']} reaches below -{MARGIN:g}"
        )
    torch_top1 = sets["cascal-mmlu"]["runtimes"]["torch"]["top1"]
    res = result(
        "embedder-quality",
        f"cascal-mmlu top-1: torch {torch_top1:.3f}, "
        + ", ".join(f"{r} {sets['cascal-mmlu']['runtimes'][r]['top1']:.3f}" for r in RUNTIMES[1:])
        + f"; int8 same pick {int8['same_pick']:.0%}, cosine median {int8['cosine_median']:.4f}",
        "PyTorch fp32 (sentence-transformers), same questions, draws and seeds",
        fig,
        round(int8["top1"] / torch_top1, 4),
        "int8 / PyTorch top-1 on cascal-mmlu",
        f"int8's paired 95% CI of the top-1 difference above -{MARGIN * 100:g} point",
        missed,
        args.quick,
    )
    return finish(res, args.out)


if __name__ == "__main__":
    sys.exit(main())
