"""The public face of rewardq.storage: the names other parts import, pinned."""

from __future__ import annotations

import subprocess
import sys

import rewardq.storage


def test_public_names_are_pinned() -> None:
    assert set(rewardq.storage.__all__) == {
        "COLUMNS",
        "FINAL_STATUSES",
        "REQUIRED",
        "Agreement",
        "Base",
        "ChainReport",
        "Disagreement",
        "Drift",
        "DriftTest",
        "InvalidScoreRow",
        "PairedScore",
        "RewardDiff",
        "RewardStep",
        "RunHealth",
        "RunSummary",
        "ScoreRecord",
        "ScoreRow",
        "StepStats",
        "current",
        "diff_scores",
        "downgrade",
        "head",
        "list_runs",
        "make_engine",
        "paired_scores",
        "run_exists",
        "run_health",
        "run_scores",
        "sample_history",
        "scores_table",
        "step_stats",
        "stored_scores",
        "upgrade",
        "verify_run",
        "write_scores",
    }
    for name in rewardq.storage.__all__:
        assert getattr(rewardq.storage, name) is not None


def test_importing_storage_connects_to_nothing_and_imports_no_worker_code() -> None:
    code = (
        "import sys, rewardq.storage\n"
        "heavy = ('torch', 'psycopg', 'celery.worker')\n"
        "bad = sorted(m for m in sys.modules if m.startswith('rewardq.workers') or m in heavy)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
