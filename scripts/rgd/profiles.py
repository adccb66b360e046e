"""`rgd install-profile`: put a profile of this checkout where Snakemake looks for named profiles.

`snakemake --profile slurm` (the command docs/SLURM.md gives) resolves the name in the current
directory, then in Snakemake's user and site configuration directories
($XDG_CONFIG_HOME/snakemake, default ~/.config/snakemake; /etc/xdg/snakemake): not in the
checkout's profiles/ folder, so from the checkout root it failed with "no profile.yaml (or
config.yaml) found". This copies profiles/NAME/config.yaml into the user directory, with a header
naming where it came from. The site values (partition, account, GPU model) are not copied: the
workflow reads them from the checkout's profiles/slurm/site.yaml or RGD_SLURM_* variables
(workflow/rules/resources.smk), wherever the profile lives.
"""

from __future__ import annotations

import os
from pathlib import Path

from .io import InputError, SetupError, read_text, write_text

HEADER = (
    "# Installed by `rgd install-profile {name}` from {source}.\n# Reinstall after updating the checkout.\n"
)


def checkout_profiles() -> Path:
    """profiles/ of the checkout this package runs from (an editable install: scripts/rgd/)."""
    d = Path(__file__).resolve().parents[2] / "profiles"
    if not d.is_dir():
        raise SetupError(
            f"no profiles/ folder next to the rgd package ({d}): run from a checkout (pip install -e .)"
        )
    return d


def user_profiles() -> Path:
    """Snakemake's user profile directory, found the way Snakemake finds it (platformdirs)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir("snakemake", "snakemake"))


def install(name: str, dest: str | os.PathLike | None = None, force: bool = False) -> tuple[Path, bool]:
    """(installed config.yaml, whether it was written): copy profiles/NAME/config.yaml to
    DEST/NAME/config.yaml (DEST: Snakemake's user profile directory). A different file there is
    kept unless `force`; the same one is left as it is."""
    profiles = checkout_profiles()
    known = sorted(p.name for p in profiles.iterdir() if (p / "config.yaml").is_file())
    if name not in known:
        raise InputError(
            "<command line>", None, "NAME", f"no profile {name!r} in {profiles} (known: {', '.join(known)})"
        )
    source = profiles / name / "config.yaml"
    text = HEADER.format(name=name, source=source) + read_text(source)
    target = Path(dest if dest is not None else user_profiles()) / name / "config.yaml"
    if target.is_file():
        old = read_text(target)
        if old == text:
            return target, False
        if not force:
            raise InputError(
                target,
                None,
                None,
                "exists and differs from the checkout's profile: give --force to replace it",
            )
    write_text(target, text)
    return target, True
