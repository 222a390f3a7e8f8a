"""The house style holds: ruff and mypy are clean on the code."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.package_tree import lay_out_package

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
    ],
    ids=["ruff-check", "ruff-format"],
)
def test_clean(command: list[str]) -> None:
    proc = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lay_out_package(tmp_path_factory.mktemp("installed"))


def mypy(tree: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    """mypy from ``tree`` with the repo's settings; the repo's cache keeps a rerun fast (it is keyed by module
    and file content, not by the temporary folder)."""
    return subprocess.run(
        [
            str(BIN / "mypy"),
            *("--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache")),
            *targets,
        ],
        cwd=tree,
        env={**os.environ, "MYPYPATH": str(tree)},
        capture_output=True,
        text=True,
    )


def test_mypy_clean(installed: Path) -> None:
    """mypy on the package as installed, and on bench/ with its ``rewardq`` imports resolved to that tree.
    Run on the repo's folders instead, every ``rewardq`` import would be Any (mypy cannot see package-dir)."""
    proc = mypy(installed, "rewardq", str(ROOT / "bench"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sources = [*(installed / "rewardq").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    assert f"no issues found in {len(sources)} source files" in proc.stdout


def test_mypy_checks_across_modules(installed: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(installed, tree)
    (tree / "rewardq" / "_wrong.py").write_text(
        "from rewardq.wire.schema import MAX_RUN_ID\n\nname: str = MAX_RUN_ID\n"
    )
    proc = mypy(tree, "rewardq")
    assert (
        'rewardq/_wrong.py:3: error: Incompatible types in assignment (expression has type "int"'
        in proc.stdout
    )


MAX_MODULE_LINES = 400


def test_no_module_over_400_lines() -> None:
    """A module nearing 400 lines is doing several jobs: split it along them (STYLE.md)."""
    modules = [p for top in ("producer", "workers", "storage") for p in (ROOT / top).rglob("*.py")]
    long = {
        str(p.relative_to(ROOT)): n
        for p in modules
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_test_files_have_basenames_of_their_own() -> None:
    """pytest imports test files by basename (the tests have no packages): two alike stop collection in a
    clean clone, where no cached module hides it."""
    seen: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
