"""The package's face: the public names, and what importing it does not import."""

import subprocess
import sys

import rewardq


def test_public_names_are_pinned() -> None:
    assert sorted(rewardq.__all__) == sorted(
        [
            "ChunkResult",
            "ConfigError",
            "DeadlineExceeded",
            "DeadlinePolicy",
            "EmbeddedUnavailable",
            "InvalidInputError",
            "Problem",
            "RewardClient",
            "RewardqError",
            "Sample",
            "ScoreHandle",
            "ScoreResult",
            "ScoreTask",
            "Settings",
            "SettingsError",
            "Status",
            "UnknownBatchError",
            "UnknownRewardError",
            "weighted_total",
        ]
    )
    for name in rewardq.__all__:
        assert hasattr(rewardq, name)


def test_importing_the_producer_imports_no_worker_storage_or_heavy_code() -> None:
    code = (
        "import sys, rewardq, rewardq.rescore;"
        "import rewardq.integrations.trl, rewardq.integrations.swift, rewardq.integrations.verl;"
        "heavy = ('torch', 'transformers', 'sqlalchemy', 'math_verify', 'trl', 'swift', 'verl', 'fastapi',"
        " 'uvicorn', 'starlette');"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy"
        " or m.startswith(('rewardq.workers', 'rewardq.storage', 'rewardq.gateway'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
