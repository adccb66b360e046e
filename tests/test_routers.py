"""rgd.routers, the one door to every router kind: the registry agrees with the config schema, the
module imports nothing heavy (the Snakefile imports it at parse time), every kind follows the one
estimator interface, and key gating, params checks, save and load work the same for all kinds."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rgd import routers
from rgd.io import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_schema_router_enum_is_the_registry():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["routers"]["propertyNames"]["enum"] == list(routers.KINDS)


def test_key_gating_derives_from_the_signal():
    assert routers.NEEDS_KEYS == {"cascal-gt", "knn", "mlp", "mf", "best-single"}
    assert routers.QUERY_ONLY == ("cascal",) and set(routers.QUERY_ANSWER) == routers.NEEDS_KEYS
    assert all(routers.needs_keys(k) == (routers.REGISTRY[k].signal == "correctness") for k in routers.KINDS)
    with pytest.raises(ValueError, match="unknown router kind 'nope'; known: cascal, "):
        routers.needs_keys("nope")


def test_importing_the_door_and_building_routers_stays_light():
    code = (
        "import sys; from rgd import routers\n"
        "for k in routers.KINDS: routers.check_params(k, {})\n"
        "print(sorted(m for m in ('sklearn', 'threadpoolctl', 'torch', 'transformers', 'scipy') if m in "
        "sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _world(n=300, m=3, d=8, seed=0):
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n)
    X = np.eye(d)[group] * 3 + rng.normal(size=(n, d))
    choices = rng.integers(0, 4, (n, m))
    choices[:, 0] = np.where(group == 0, 0, choices[:, 0])  # model 0 agrees with the key in group 0
    gold = np.zeros(n, dtype=np.int64)
    consensus = rng.uniform(0.1, 0.9, (n, m))
    return routers.TrainingSet(
        X=X,
        experts=[f"m{j}" for j in range(m)],
        subjects=["s"] * n,
        choices=choices,
        consensus=consensus,
        correct=(choices == gold[:, None]).astype(float),
        ids=[f"q{i}" for i in range(n)],
        embedder={"kind": "test"},
    )


SMALL = {"knn": {"k": 5}, "mlp": {"hidden": [8], "max_iter": 20}, "mf": {"dim": 4, "epochs": 20}}


@pytest.mark.parametrize("kind", routers.KINDS)
def test_every_kind_is_one_estimator(tmp_path, kind):
    full = _world()
    data = full if routers.needs_keys(kind) else dataclasses.replace(full, correct=None)
    router = routers.train(kind, SMALL.get(kind, {}), 0, data)
    assert router.kind == kind and router.signal == routers.REGISTRY[kind].signal
    X = _world(n=7, seed=1).X
    S = routers.scores(router, X)
    assert S.shape == (7, 3) and np.isfinite(S).all()
    diag = routers.diagnostics(router, X)
    assert set(diag) == set(type(router).diagnostic_fields) and all(len(v) == 7 for v in diag.values())
    # an unfitted copy from get_params, and the artifact through the one door
    clone = type(router)(**router.get_params())
    assert clone.get_params() == router.get_params()
    routers.save(router, kind, tmp_path / kind, data.experts, data.embedder, {"n": 300})
    loaded, prov = routers.load(tmp_path / kind)
    assert prov["kind"] == kind and type(loaded) is type(router) and loaded.kind == kind
    assert routers.scores(loaded, X).tobytes() == S.tobytes()


def test_train_gates_answer_keys():
    data = _world()
    with pytest.raises(ValueError, match="query-only: it must not be given answer keys"):
        routers.train("cascal", {}, 0, data)
    blind = dataclasses.replace(data, correct=None)
    with pytest.raises(ValueError, match="query-answer router: it needs the training source's keys"):
        routers.train("knn", {}, 0, blind)
    # a router fitted directly still refuses the signal it does not have
    with pytest.raises(ValueError, match="KNNRouter: needs answer-key correctness"):
        routers.make("knn").fit(blind)


@pytest.mark.parametrize(
    "kind, params, message",
    [
        ("knn", {"k": 0}, "k: expected an integer >= 1"),
        ("knn", {"neighbours": 3}, "neighbours: unknown parameter of knn"),
        ("mlp", {"hidden": [0]}, "hidden"),
        ("mlp", {"lr": 0}, "lr"),
        ("mf", {"dim": "8"}, "dim"),
        ("cascal", {"k_max": 1}, "k_max"),
        ("cascal", {"nope": 1}, "nope: unknown parameter of cascal"),
        ("cascal", {"compat": "original", "silhouette": "linear"}, "compat='original' sets 'sklearn'"),
        ("cascal-gt", {"signal": "consensus"}, "signal: set by the router kind"),
        ("best-single", {"seed": 1}, "seed: unknown parameter of best-single"),
    ],
)
def test_check_params_rejects_bad_configs_without_data(kind, params, message):
    with pytest.raises(ValueError, match=message):
        routers.check_params(kind, params)


def test_the_router_seed_fills_params_seed():
    assert routers.make("mf", {}, 7).seed == 7 and routers.make("mf", {"seed": 3}, 7).seed == 3
    assert routers.make("cascal", {}, 5).config.seed == 5
    assert "seed" not in routers.make("knn", {}, 5).get_params()


def test_load_refuses_unknown_or_mismatched_kinds(tmp_path):
    data = _world()
    router = routers.train("knn", {"k": 3}, 0, data)
    routers.save(router, "knn", tmp_path / "r", data.experts, None, {})
    prov = json.loads((tmp_path / "r" / routers.PROVENANCE).read_text())
    (tmp_path / "r" / routers.PROVENANCE).write_text(json.dumps({**prov, "kind": "mf"}))
    with pytest.raises(InputError, match="cannot be loaded as MFRouter"):
        routers.load(tmp_path / "r")
    (tmp_path / "r" / routers.PROVENANCE).write_text(json.dumps({**prov, "kind": "best_single"}))
    with pytest.raises(InputError, match="unknown router kind 'best_single'"):
        routers.load(tmp_path / "r")
    with pytest.raises(ValueError, match="not 'mf'"):
        routers.save(router, "mf", tmp_path / "s", data.experts, None, {})
