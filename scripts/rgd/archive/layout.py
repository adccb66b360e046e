"""Names, bounds and the config hash shared by building and verifying (see rgd.archive)."""

from __future__ import annotations

from ..config import canonical_json as canonical_config
from ..config import config_hash

FORMAT = "rgd-results-archive/1"
MANIFEST, SUMS = "MANIFEST", "SHA256SUMS"
CONFIG_JSON = "config/config.json"
METADATA = (MANIFEST, SUMS, CONFIG_JSON)
CHUNK = 1 << 20
# A MANIFEST lists about 150 bytes per file: 16 MiB is ~100,000 files, 50 times a paper-scale run.
# `rgd verify` never reads a larger metadata member (a small .tar.gz can inflate to gigabytes).
MAX_METADATA_BYTES = 16 << 20
MAX_MEMBERS = 200_000


class ArchiveError(ValueError):
    """The archive is not what its MANIFEST says, or cannot be built safely."""


__all__ = ["canonical_config", "config_hash"]  # the config hash is rgd.config's, named here for the archive


def archive_name(chash: str) -> str:
    return f"rgd-results-{chash[:12]}.tar.gz"


def sums_text(files: dict[str, dict]) -> str:
    return "".join(f"{v['sha256']}  {k}\n" for k, v in sorted(files.items()))
