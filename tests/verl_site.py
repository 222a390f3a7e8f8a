"""verl's reward scorers for tests: ``pip install --no-deps verl`` into ``.cache/verl-site``.

verl's own requirements (ray, vllm, an older transformers) do not fit this venv, and its scorers do
not need them (rewardq stubs what is missing). Its wheel also ships a top-level ``tests`` package,
which would hide this repo's ``tests``: so it goes to a folder of its own, without that package, put
at the END of ``sys.path`` and of ``PYTHONPATH`` (for worker processes) by the ``verl_site`` fixture.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unavailable

VERL = "verl==0.9.1"
SITE = Path(__file__).resolve().parents[1] / ".cache" / "verl-site"
MARKER = SITE / "rewardq-verl.txt"


def install() -> Path:
    """The folder holding verl, installed there first unless it already holds VERL."""
    SITE.parent.mkdir(parents=True, exist_ok=True)
    with (SITE.parent / "verl-site.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not MARKER.exists() or MARKER.read_text() != VERL:
            shutil.rmtree(SITE, ignore_errors=True)
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(SITE), VERL],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                unavailable(f"cannot install {VERL}: {done.stderr[-2000:]}")
            shutil.rmtree(SITE / "tests", ignore_errors=True)
            MARKER.write_text(VERL)
    return SITE


@pytest.fixture(scope="session")
def verl_site() -> Iterator[Path]:
    """verl importable here and in the processes tests start (appended to sys.path and PYTHONPATH)."""
    site = install()
    before = os.environ.get("PYTHONPATH")
    sys.path.append(str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (before, str(site)) if p)
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before
