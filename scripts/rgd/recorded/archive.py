"""Bounded reading of published output files: a JSON file, a .zip, or a tar (.tar, .tar.gz/.tgz,
.tar.xz, .tar.bz2), with the standard library only.

An archive is never extracted to disk: each JSON member is read into memory after its declared
size is checked against a bound (one member, and all members together), so a decompression bomb
or a huge member fails before it is inflated. Links, devices, absolute names and names with `..`
are refused, not skipped: a published results archive has none, so one is a sign of a wrong or
tampered file. Members that are not JSON, and directories, are ignored.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..io import InputError, os_input_error, read_bytes

MAX_MEMBER_BYTES = 512 << 20  # one JSON member (the largest published file is 23 MB)
MAX_TOTAL_BYTES = 2 << 30  # all members of one archive together
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")


@dataclass(frozen=True)
class Member:
    """One JSON document of an input file: `where` names it in errors (`file.zip!member.json`)."""

    name: str
    where: str
    data: bytes


def _check_name(path: Path, name: str) -> None:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or name.startswith(("/", "\\")) or ":" in p.parts[0]:
        raise InputError(path, None, None, f"archive member {name!r}: absolute or parent-relative name")


def _check_sizes(path: Path, sizes: list[tuple[str, int]]) -> None:
    total = 0
    for name, size in sizes:
        if size > MAX_MEMBER_BYTES:
            raise InputError(
                path,
                None,
                None,
                f"archive member {name!r}: {size} bytes, over the bound of {MAX_MEMBER_BYTES}",
            )
        total += size
    if total > MAX_TOTAL_BYTES:
        raise InputError(path, None, None, f"archive members total {total} bytes, over {MAX_TOTAL_BYTES}")


def _zip_members(path: Path) -> list[Member]:
    try:
        with zipfile.ZipFile(path) as z:
            infos = [i for i in z.infolist() if not i.is_dir()]
            for i in infos:
                _check_name(path, i.filename)
                kind = stat.S_IFMT(i.external_attr >> 16)  # Unix file type, 0 when none is recorded
                if i.create_system == 3 and kind not in (0, stat.S_IFREG):
                    raise InputError(path, None, None, f"archive member {i.filename!r}: not a regular file")
            infos = [i for i in infos if i.filename.endswith(".json")]
            _check_sizes(path, [(i.filename, i.file_size) for i in infos])
            # ZipExtFile stops at the declared size and checks the CRC
            return [Member(i.filename, f"{path}!{i.filename}", z.read(i)) for i in infos]
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise InputError(path, None, None, f"not a readable zip archive ({e})") from None
    except OSError as e:
        raise os_input_error(path, e) from None


def _tar_members(path: Path) -> list[Member]:
    try:
        with tarfile.open(path, "r:*") as t:
            infos = t.getmembers()
            for i in infos:
                _check_name(path, i.name)
                if not (i.isfile() or i.isdir()):
                    raise InputError(path, None, None, f"archive member {i.name!r}: a link or special file")
            infos = [i for i in infos if i.isfile() and i.name.endswith(".json")]
            _check_sizes(path, [(i.name, i.size) for i in infos])
            out = []
            for i in sorted(infos, key=lambda i: i.name):
                fh = t.extractfile(i)
                data = fh.read(i.size + 1) if fh is not None else b""
                if len(data) != i.size:
                    raise InputError(path, None, None, f"archive member {i.name!r}: truncated")
                out.append(Member(i.name, f"{path}!{i.name}", data))
            return out
    except InputError:
        raise
    except (tarfile.TarError, EOFError, ValueError) as e:
        raise InputError(path, None, None, f"not a readable tar archive ({e})") from None
    except OSError as e:  # lzma and gzip raise OSError subclasses on corrupt data
        if e.errno is not None:
            raise os_input_error(path, e) from None
        raise InputError(path, None, None, f"not a readable tar archive ({e})") from None


def json_members(path: str | Path) -> list[Member]:
    """The JSON documents of an input file, in member-name order."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".zip"):
        members = _zip_members(path)
    elif name.endswith(TAR_SUFFIXES):
        members = _tar_members(path)
    elif name.endswith(".json"):
        return [Member(path.name, str(path), read_bytes(path))]
    else:
        raise InputError(path, None, None, "expected a .json, .zip or tar file (.tar, .tar.gz, .tar.xz)")
    if not members:
        raise InputError(path, None, None, "the archive holds no .json file")
    return sorted(members, key=lambda m: m.name)
