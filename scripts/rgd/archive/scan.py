"""Keeping secrets out of the archive: secret-named files, known secret values, key-shaped strings."""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

from ..io import InputError
from ..secrets import parse_env_file
from .layout import CHUNK, ArchiveError

SECRET_NAMES = (
    ".env",
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_ed25519*",
    "id_ecdsa*",
    ".netrc",
    ".pypirc",
    ".npmrc",
    "*credentials*",
    "*.secret",
    "*.secrets",
    "secrets.*",
)
SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)
KEY_PATTERNS = {
    "a Google API key": rb"AIza[0-9A-Za-z_\-]{35}",
    "an OpenAI-style secret key": rb"sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",
    "a Hugging Face token": rb"hf_[A-Za-z0-9]{30,}",
    "an AWS access key id": rb"(?:AKIA|ASIA)[0-9A-Z]{16}",
    "a GitHub token": rb"gh[pousr]_[A-Za-z0-9]{36,}",
    "a private key block": rb"-----BEGIN [A-Z ]*PRIVATE KEY-----",
}
MIN_SECRET_LEN = 12  # shorter values ("true", "password") would match ordinary text; API keys are longer


def is_secret_name(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), p) for p in SECRET_NAMES)


def env_file_values(path: Path) -> list[str]:
    """Every value of a `.env` file long enough to be a secret, parsed as the steps read it
    (rgd.secrets.parse_env_file). A file that cannot be read stops the build: its values could
    not be searched for."""
    try:
        values = parse_env_file(path).values()
    except OSError as e:
        raise ArchiveError(
            f"{path}: cannot read it to keep its values out of the archive ({e.strerror})"
        ) from None
    except InputError as e:
        raise ArchiveError(f"{e}: cannot keep its values out of the archive") from None
    return [v for v in values if len(v) >= MIN_SECRET_LEN]


def secret_values(env_files: list[Path] = (), environ: dict | None = None) -> list[bytes]:
    """Known secret strings: secret-named environment variables and every value in `env_files`."""
    environ = os.environ if environ is None else environ
    vals = {
        v.strip() for k, v in environ.items() if SECRET_ENV.search(k) and len(v.strip()) >= MIN_SECRET_LEN
    }
    for f in env_files:
        vals.update(env_file_values(Path(f)))
    return sorted(v.encode() for v in vals)


class SecretScanner:
    """Finds known secret values and key-shaped strings in a byte stream fed in chunks."""

    def __init__(self, values: list[bytes]):
        pats = [(f"the value of a secret ({v[:3].decode(errors='replace')}…)", re.escape(v)) for v in values]
        pats += list(KEY_PATTERNS.items())
        self.patterns = [(what, re.compile(p)) for what, p in pats]
        self.overlap = max([len(v) for v in values] + [128])

    def _check(self, buf: bytes, where: str, first_line: int) -> None:
        for what, rx in self.patterns:
            m = rx.search(buf)
            if m:
                line = first_line + buf.count(b"\n", 0, m.start())
                raise ArchiveError(
                    f"{where}:{line}: looks like {what}: refusing to archive a secret "
                    "(remove it from the results, or the file from the archive)"
                )

    def scan_bytes(self, data: bytes, where: str) -> None:
        self._check(data, where, 1)

    def scan(self, path: Path, hasher=None) -> int:
        """Raise ArchiveError `path:line: ...` at the first hit; feed `hasher`; return the size."""
        tail, line, size = b"", 1, 0
        with open(path, "rb") as fh:
            while block := fh.read(CHUNK):
                if hasher is not None:
                    hasher.update(block)
                size += len(block)
                buf = tail + block
                self._check(buf, str(path), line)
                tail = buf[-self.overlap :]
                line += buf.count(b"\n", 0, len(buf) - len(tail))
        return size
