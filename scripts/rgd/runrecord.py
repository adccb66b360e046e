"""Run records: what one run of a step measured, kept apart from the step's metadata.

A step's `.meta.json` sits next to its outputs and is archived, so the archive's digest covers it:
it holds only facts that two runs of the same inputs share (settings, model identity, counts,
token totals over all records, device, versions). The figures that depend on the run go into a
separate run record instead: wall times, rates, load times, how many records this run computed
and how many it found in the cache (a resumed job differs from an uninterrupted one), API request
and retry counts. The record goes to `--run-record PATH` (the workflow writes it under
results/logs/, which is never archived) or, without a path, as one line `run record: {...}` on
stdout, which lands in the job log.

The record has the meta's shape restricted to the run-dependent keys, so merging the two gives
the full picture: `{**meta, **record}` (the nested `throughput` block is split the same way).
"""

from __future__ import annotations

import json
from pathlib import Path

from .io import write_json

# Keys (at any depth) whose values depend on the run, not on the inputs. One list for every step,
# and for `rgd archive`'s warning about archived metadata that still records a run.
RUN_KEYS = frozenset(
    {
        "n_computed",
        "n_cached",  # how much this run did, and how much a previous run left in the cache
        "computed_prompts",
        "computed_tokens",
        "seconds",
        "compute_seconds",
        "load_seconds",
        "tokens_per_second",
        "questions_per_second",
        "this_run",  # API request and retry counts
    }
)
OPTION_HELP = (
    "JSON file for this run's timings and cache counts (default: one stdout line; see rgd.runrecord)"
)


def split(meta: dict) -> tuple[dict, dict]:
    """(facts, record): `meta` without the RUN_KEYS, and those keys alone, nested as in `meta`.
    A block left empty by the split (all its keys run-dependent) is dropped from the facts."""
    facts, record = {}, {}
    for k, v in meta.items():
        if k in RUN_KEYS:
            record[k] = v
        elif isinstance(v, dict):
            f, r = split(v)
            if f or not r:
                facts[k] = f
            if r:
                record[k] = r
        else:
            facts[k] = v
    return facts, record


def run_keys_in(obj, prefix: str = "") -> list[str]:
    """Dotted paths of the RUN_KEYS found in a JSON object (for `rgd archive`'s check)."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{prefix}{k}"
            out += [path] if k in RUN_KEYS else run_keys_in(v, path + ".")
    return out


def emit(
    record: dict, record_path: str | Path | None, *, step: str, output: str | Path | None = None
) -> None:
    """Write the run record to `record_path` (JSON), or print it as one stdout line."""
    rec = {"step": step, **({"output": str(output)} if output is not None else {}), **record}
    if record_path:
        write_json(record_path, rec)
    else:
        print("run record: " + json.dumps(rec, sort_keys=True), flush=True)


def write_meta(meta_path: str | Path, meta: dict, record_path: str | Path | None, *, step: str) -> dict:
    """Write `meta`'s facts to `meta_path` and its run-dependent figures as a run record; return
    `meta` unchanged (the caller's summary may print either part)."""
    facts, record = split(meta)
    write_json(meta_path, facts)
    emit(record, record_path, step=step, output=meta_path)
    return meta
