"""The package laid out as pip installs it, for the tools that read sources instead of importing them
(import-linter, mypy): the repo maps three folders to the one package ``rewardq`` through pyproject's
package-dir, which those tools cannot follow."""

import shutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lay_out_package(target: Path) -> Path:
    """Copy the folders into ``target`` as ``rewardq/``, ``rewardq/workers/``, ``rewardq/storage/`` (from
    pyproject's package-dir mapping, building nothing in the repo) and return ``target``."""
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(package_dir.items()):  # "rewardq" first, then the folders inside it
        shutil.copytree(
            ROOT / folder,
            target.joinpath(*package.split(".")),
            ignore=shutil.ignore_patterns("__pycache__"),
            dirs_exist_ok=True,
        )
    return target
