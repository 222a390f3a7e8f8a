"""The ms-swift venv that tests share: ms-swift pins its own transformers (< 5.20) and trl (< 1.0).

Made once under ``.cache/venv-swift`` (a few minutes with a warm pip cache) and reused while its
requirements stay the same. It has ms-swift, the CPU torch, this repo's producer side (an editable
install without dependencies, plus the producer's own: celery, redis, pydantic, orjson) so that a
plugin file can import ``rewardq.integrations.swift``, and ``msgspec``, which ms-swift's GRPO trainer
needs. math-verify is not an ms-swift dependency: the venv gets the versions of math-verify, its LaTeX
parser and sympy that this venv has, so that parity tests compare ms-swift's logic, not two releases.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".cache" / "venv-swift"
MARKER = VENV / "rewardq-requirements.txt"
REQUIREMENTS = [
    "ms-swift==4.6.0",
    "torch==2.13.0",  # pinned: an unpinned torch pulls a multi-GB CUDA build
    *(f"{name}=={version(name)}" for name in ("math-verify", "latex2sympy2_extended", "sympy")),
    "msgspec",
    "celery[redis]>=5.5,<6",
    "pydantic>=2.7,<3",
    "orjson>=3.10",
    "typer>=0.12",
    "tqdm>=4.66",
    "rich>=13",
    "setuptools>=77",  # builds the editable install of this repo without build isolation
]


def _unavailable(reason: str) -> None:
    """Skip on a laptop, fail in CI (the policy of tests/conftest.py)."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason)
    pytest.skip(reason)


def swift_python() -> Path:
    """The ms-swift venv's python, making the venv first unless it has these requirements already."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    wanted = "\n".join([*REQUIREMENTS, f"-e {ROOT}"]) + "\n"
    with (VENV.parent / "venv-swift.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not MARKER.exists() or MARKER.read_text() != wanted:
            shutil.rmtree(VENV, ignore_errors=True)
            pip = str(VENV / "bin" / "pip")
            steps = [
                [sys.executable, "-m", "venv", str(VENV)],
                [pip, "install", *REQUIREMENTS],
                [pip, "install", "--no-deps", "--no-build-isolation", "-e", str(ROOT)],
            ]
            for step in steps:
                done = subprocess.run(step, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    _unavailable(f"cannot make the ms-swift venv: {' '.join(step)}\n{done.stderr[-3000:]}")
            MARKER.write_text(wanted)
    return VENV / "bin" / "python"
