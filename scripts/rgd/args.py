"""Options of `rgd <step>`: argparse with one-line errors, typed option values, and a path kind on
every file option, checked before the step runs (an input exists and is a readable file or
directory; an output can be written there). Used by rgd.cli and rgd.report.commands."""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path

from .io import MAX_JSON_DEPTH, InputError, nested_deeper_than, os_input_error
from .spec import parse_pairs

# path kinds of options, checked by `check_paths` before the step runs
IN, IN_DIR, IN_ANY, OUT, OUT_DIR = "in", "in-dir", "in-any", "out", "out-dir"
PAIRS, PAIRS_DIR = "pairs", "pairs-dir"  # NAME=PATH items: parsed into a dict, each path an input


class StepParser(argparse.ArgumentParser):
    """argparse with one-line errors and a path kind on options (`add_argument(..., path=IN)`)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.path_kinds: dict[str, str] = {}

    def add_argument(self, *args, path: str | None = None, **kw):
        action = super().add_argument(*args, **kw)
        if path:
            self.path_kinds[action.dest] = path
        return action

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def json_arg(text: str):
    """JSON as standard JSON has it: NaN and Infinity are refused."""

    def no_constant(name):
        raise ValueError(f"{name} is not a JSON number")

    try:
        value = json.loads(text, parse_constant=no_constant)
    except (json.JSONDecodeError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {getattr(e, 'msg', e)}") from None
    except RecursionError:
        value = None
    else:
        if not nested_deeper_than(value, MAX_JSON_DEPTH):
            return value
    raise argparse.ArgumentTypeError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")


def json_object(text: str) -> dict:
    """A JSON object (null is the empty one)."""
    value = json_arg(text)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def count(low: int):
    """An integer >= low."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v

    parse.__name__ = f"integer >= {low}"
    return parse


def fraction(include_one: bool = False):
    """A number in (0, 1), or in (0, 1] with `include_one`."""
    interval = "(0, 1]" if include_one else "(0, 1)"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (0.0 < v < 1.0 or (include_one and v == 1.0)):
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {v}")
        return v

    parse.__name__ = f"number in {interval}"
    return parse


def _input(path: str) -> InputError | None:
    """Why `path` cannot be read as a file, or None."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        return os_input_error(path, e)
    if stat.S_ISDIR(st.st_mode):
        return InputError(path, None, None, "is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        return InputError(path, None, None, "not a regular file")
    if not os.access(p, os.R_OK):
        return InputError(path, None, None, "permission denied (cannot read)")
    return None


def _input_dir(path: str) -> InputError | None:
    p = Path(path)
    if not p.exists():
        err = _input(path)
        return InputError(path, None, None, "directory not found") if err and "not found" in str(err) else err
    if not p.is_dir():
        return InputError(path, None, None, "is a file, expected a directory")
    if not os.access(p, os.R_OK | os.X_OK):
        return InputError(path, None, None, "permission denied (cannot read)")
    return None


def _output(path: str, is_dir: bool) -> InputError | None:
    p = Path(path)
    if p.is_dir() and not is_dir:
        return InputError(path, None, None, "cannot write: is a directory")
    if p.exists() and is_dir and not p.is_dir():
        return InputError(path, None, None, "cannot write: is a file, expected a directory")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return InputError(path, None, None, f"cannot write: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        return InputError(path, None, None, f"cannot write: permission denied in {parent}")
    return None


def check_paths(args: argparse.Namespace) -> None:
    """Check every path option of the step before it runs; NAME=PATH options become dicts."""
    for dest, kind in getattr(args, "path_kinds", {}).items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if kind in (PAIRS, PAIRS_DIR):
            value = parse_pairs(value, "--" + dest.replace("_", "-"))
            setattr(args, dest, value)
            paths, kind = list(value.values()), IN if kind == PAIRS else IN_DIR
        else:
            paths = value if isinstance(value, list) else [value]
        for path in paths:
            if kind == IN:
                err = _input(path)
            elif kind == IN_DIR:
                err = _input_dir(path)
            elif kind == IN_ANY:
                err = None if Path(path).is_dir() else _input(path)
            else:
                err = _output(path, kind == OUT_DIR)
            if err is not None:
                raise err
