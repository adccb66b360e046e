"""The frozen results archive: `rgd archive` builds it, `rgd verify` re-checks it.

Layout (one top folder, `rgd-results-<hash12>/`):
  MANIFEST             JSON: format, config hash, git commit, Python, package versions, model and
                       dataset revisions, and {"sha256", "size"} of every other file
  SHA256SUMS           the same hashes in `sha256sum -c` format, for readers without rgd
  config/config.json   the loaded config as canonical JSON (its sha256 is the config hash)
  config/...           the config files and category descriptions as given
  results/...          datasets, responses, consensus, routers, routes, metrics, tables, figures

Config hash: sha256 of the UTF-8 bytes of
  json.dumps(config, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
where `config` is the configuration after Snakemake loaded the config files and the schema
filled in defaults. The archive name carries its first 12 hex digits.

Determinism: the same inputs give the same archive, byte for byte, on every run. Members in
sorted order, mtime 0 (or $SOURCE_DATE_EPOCH), owner 0:0, mode 0644, gzip header without name or
time, no timestamps in the MANIFEST; and what the steps archive holds no figure of the run that
made it: wall times, rates and cache counts go to run records under results/logs/ (rgd.runrecord),
and the Snakemake HTML report (job runtimes, a timeline, its creation time) stays beside the
archive, not in it. `rgd archive` warns when an archived JSON file still records such figures.

Secrets never enter: files named like secrets (.env, *.pem, *.key, credentials, ...) are skipped,
and every archived byte is scanned for the values of secret-named environment variables and of
`.env` files, and for key-shaped strings (Google, OpenAI, Hugging Face, AWS, GitHub, private key
blocks). A hit stops the build with `file:line`, before any archive is written.

What protects the MANIFEST itself is the archive's own sha256, an *independent* digest: the one
published with the archive (`rgd verify --sha256 HEX`), or `<archive>.sha256` written next to it.
See rgd.archive.verifying for what each one proves.
"""

import importlib

# Names re-exported from the submodules, imported on first use: `rgd <any step>` builds the parser
# that registers rgd.archive.commands, and should not pay for tarfile, gzip and the scanner.
_EXPORTS = {
    "building": ("build", "collect", "config_members", "git_info", "package_versions"),
    "layout": (
        "CHUNK",
        "CONFIG_JSON",
        "FORMAT",
        "MANIFEST",
        "MAX_METADATA_BYTES",
        "SUMS",
        "ArchiveError",
        "archive_name",
        "canonical_config",
        "config_hash",
        "sums_text",
    ),
    "scan": ("SecretScanner", "is_secret_name", "secret_values"),
    "verifying": ("Verified", "verify"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
