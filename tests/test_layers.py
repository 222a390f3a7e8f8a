"""The layering is a contract: import-linter (``.importlinter``) on the installed tree, which shows the three
folders as the one package ``rewardq`` that users import. A wrong-way import fails it, and every module of the
producer side sits in its layer."""

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.package_tree import lay_out_package

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = ROOT / ".importlinter"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package laid out as pip installs it (``rewardq/``, ``rewardq/workers/``, ``rewardq/storage/``)."""
    return lay_out_package(tmp_path_factory.mktemp("installed"))


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache", str(CONFIG)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": str(BIN)},
        capture_output=True,
        text=True,
    )


def test_layers_are_kept(installed: Path) -> None:
    proc = lint_imports(installed)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_a_wrong_way_import_breaks_the_contract(installed: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(installed, tree)
    errors = tree / "rewardq" / "wire" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom rewardq.storage import models as _models  # noqa\n")
    proc = lint_imports(tree)
    assert proc.returncode != 0
    assert "rewardq.wire.errors -> rewardq.storage.models" in proc.stdout


def test_every_producer_module_has_its_layer() -> None:
    config = configparser.ConfigParser()
    config.read(CONFIG)
    layers = [line.strip() for line in config["importlinter:contract:layers"]["layers"].splitlines() if line]
    producer_layer = next(layer for layer in layers if "rewardq.client" in layer)
    listed = {name.strip() for name in producer_layer.split(":")}
    modules = {f"rewardq.{p.stem}" for p in (ROOT / "producer").glob("*.py") if p.stem != "__init__"}
    packages = {f"rewardq.{p.parent.name}" for p in (ROOT / "producer").glob("*/__init__.py")}
    assert listed == modules | (packages - {"rewardq.wire"})
