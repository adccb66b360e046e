"""`rgd archive` and `rgd verify` (registered by rgd.cli.build_parser through `register`).

rgd archive   the frozen results archive with its MANIFEST and ARCHIVE.sha256
rgd verify    re-check an archive against its MANIFEST and an independent digest; say which
"""

from __future__ import annotations

import contextlib
import sys

from ..args import IN, IN_ANY, IN_DIR, OUT
from ..spec import parse_pairs
from .layout import ArchiveError


@contextlib.contextmanager
def _os_errors():
    """A path that cannot be read or written (a directory, no permission) becomes one line."""
    try:
        yield
    except FileNotFoundError as e:
        raise ArchiveError(f"{e.filename}: file not found") from None
    except OSError as e:
        raise ArchiveError(f"{e.filename or ''}: {e.strerror or e}") from None


def cmd_archive(a):
    from .building import build

    with _os_errors():
        m = build(
            a.out,
            a.config_json,
            a.include,
            results=a.results,
            config_files=a.config_files or [],
            models=parse_pairs(a.model, "--model"),
            repo=a.repo,
            env_files=a.env_file or [],
        )
    for s in m["_skipped"]:
        print(f"not archived (a secret file name): {s}")
    for w in m["_warnings"]:
        print(f"rgd archive: warning: {w}", file=sys.stderr)
    print(
        f"{a.out}: {len(m['files'])} files, config {m['config_sha256'][:12]}, "
        f"git {str(m['git'].get('commit'))[:12]}, sha256 {m['_archive_sha256']}"
    )


def cmd_verify(a):
    from .verifying import verify

    with _os_errors():
        v = verify(a.archive, a.sha256, strict=a.strict)
    for w in v.warnings:
        print(f"rgd verify: warning: {w}", file=sys.stderr)
    print(
        f"OK {v.archive}: {v.n_files} files match the MANIFEST; config {v.config_sha256[:12]}, "
        f"git {v.git_commit}, sha256 {v.sha256}"
    )
    print(f"proved: {v.proved()}")


def register(add) -> None:
    """Add the subcommands with rgd.cli's `add(name, fn, help)`."""
    s = add("archive", cmd_archive, "build the frozen results archive (see rgd.archive)")
    s.add_argument("--out", required=True, path=OUT, help="results/archive/rgd-results-<hash12>.tar.gz")
    s.add_argument("--config-json", required=True, path=IN, help="written by `rgd config-snapshot`")
    s.add_argument(
        "--config-files", nargs="*", path=IN, help="config and description files, archived under config/"
    )
    s.add_argument(
        "--results", default="results", path=IN_DIR, help="the results folder (archived as results/)"
    )
    s.add_argument(
        "--include", nargs="+", required=True, path=IN_ANY, help="result files and folders, inside --results"
    )
    s.add_argument("--model", nargs="*", metavar="NAME=MANIFEST", help="model manifests (revisions)")
    s.add_argument("--repo", path=IN_DIR, help="the project's git checkout (commit)")
    s.add_argument(
        "--env-file", nargs="*", path=IN, help="extra .env files whose values must never be archived"
    )

    s = add(
        "verify",
        cmd_verify,
        "re-check every hash of a results archive; say which independent digest was checked",
    )
    s.add_argument("archive", path=IN, help="the .tar.gz to check")
    s.add_argument(
        "--sha256",
        metavar="HEX",
        help="the archive's published sha256: proves it is the published archive (default: "
        "ARCHIVE.sha256 beside it, which only shows it is intact since that file was written)",
    )
    s.add_argument(
        "--strict",
        action="store_true",
        help="fail unless --sha256 is given and matches (a sidecar or no digest is not enough)",
    )
