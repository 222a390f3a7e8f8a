"""``rewardq audit health RUN``, run as a user runs it, on an audit store (SQLite and PostgreSQL) that the
real writer filled: the tables, ``--json``, ``--plot`` and the errors."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from rewardq.storage import make_engine, upgrade, write_scores
from tests.score_rows import score_row, sha256
from tests.workers.test_cli import rewardq

SHIFT_AT = 5


@pytest.fixture
def store(database_url: str) -> str:
    """Run ``h``: 8 steps of 40 samples with their text; ``rule`` (0/1) and ``judge`` (which agrees with it)
    shift up from step 5; ``rm`` grows with the completion's length; ``judge`` has an error each step."""
    rng = random.Random(1)
    rows = []
    for step in range(8):
        for i in range(40):
            text = "z" * rng.randint(10, 500)
            lift = 0.4 if step >= SHIFT_AT else 0.0
            rule = float(rng.random() < 0.3 + lift)
            common: dict[str, Any] = {
                "run_id": "h",
                "step": step,
                "batch_id": f"b{step}",
                "sample_index": i,
                "sample_hash": sha256(f"{step} {i}"),
                "completion_text": text,
            }
            rows.append(score_row(**common, reward="rule", value=rule))
            rows.append(score_row(**common, reward="judge", value=0.7 * rule + 0.3 * rng.random()))
            rows.append(score_row(**common, reward="rm", value=len(text) / 500 + rng.gauss(0, 0.05)))
        broken = {"run_id": "h", "step": step, "batch_id": f"b{step}", "sample_index": 40}
        rows.append(
            score_row(
                **broken,
                sample_hash=sha256(f"{step} x"),
                reward="judge",
                value=None,
                status="error",
                error="judge down",
            )
        )
    upgrade(database_url)
    engine = make_engine(database_url)
    with engine.begin() as conn:
        write_scores(conn, rows)
    engine.dispose()
    return database_url


def test_tables_json_and_plot(store: str, tmp_path: Path) -> None:
    env = {"REWARDQ_DATABASE_URL": store}
    plot = tmp_path / "health.png"
    proc = rewardq("audit", "health", "h", "--plot", str(plot), env=env)
    assert "health of h" in proc.stdout and "agreement" in proc.stdout and "DRIFT" in proc.stdout
    assert "completion length in characters" in proc.stderr
    assert "Kolmogorov-Smirnov" in proc.stderr and "p < 0.001" in proc.stderr
    assert f"plot written to {plot}" in proc.stderr

    doc = json.loads(rewardq("audit", "health", "h", "--json", env=env).stdout)
    assert set(doc) == {"run", "length_unit", "length_note", "drift_test", "steps", "agreement"}
    assert doc["drift_test"] == {
        "name": "two-sample Kolmogorov-Smirnov",
        "reference": "all earlier steps",
        "window": None,
        "p_below": 0.001,
        "min_count": 20,
    }
    assert len(doc["steps"]) == 8 * 3 and len(doc["agreement"]) == 8 * 3
    row = next(s for s in doc["steps"] if (s["step"], s["reward"]) == (0, "judge"))
    assert set(row) == {"step", "reward", "count", "statuses", "mean", "std", "p10", "p90", "length", "drift"}
    assert row["count"] == 41 and row["statuses"] == {"ok": 40, "unscorable": 0, "error": 1, "timeout": 0}
    assert row["drift"] is None and set(row["length"]) == {"n", "spearman"}
    drifted = {(s["reward"], s["step"]) for s in doc["steps"] if s["drift"] and s["drift"]["flagged"]}
    assert ("rule", SHIFT_AT) in drifted and ("judge", SHIFT_AT) in drifted
    assert not {x for x in drifted if x[1] < SHIFT_AT} and not any(r == "rm" for r, _ in drifted)
    rm = [s["length"]["spearman"] for s in doc["steps"] if s["reward"] == "rm"]
    assert min(rm) > 0.9
    agree = [a["spearman"] for a in doc["agreement"] if (a["a"], a["b"]) == ("judge", "rule")]
    assert min(agree) > 0.6  # a 0/1 rule against a continuous judge: ties cap it below 1 (0.87 at p = 0.5)
    unrelated = [a["spearman"] for a in doc["agreement"] if (a["a"], a["b"]) == ("rm", "rule")]
    assert max(abs(x) for x in unrelated) < 0.4

    pair = json.loads(rewardq("audit", "health", "h", "--json", "--pair", "rm,judge", env=env).stdout)
    assert {(a["a"], a["b"]) for a in pair["agreement"]} == {("rm", "judge")}

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = pytest.importorskip("matplotlib.image").imread(plot)
    height, width = image.shape[:2]
    assert width >= 1000 and height >= 1000 and image[..., :3].std() > 0.05
    red = (image[..., 0] > 0.9) & (image[..., 1] < 0.1) & (image[..., 2] < 0.1)
    assert red.sum() > 100  # the drift markers


def test_an_unknown_run_is_one_line_and_exit_1_and_a_bad_pair_names_the_option(store: str) -> None:
    env = {"REWARDQ_DATABASE_URL": store}
    proc = rewardq("audit", "health", "nope", env=env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "no scores of run 'nope' in the audit store" and proc.stdout == ""
    proc = rewardq("audit", "health", "h", "--reward", "accuracy", env=env, check=False)
    assert (
        proc.returncode == 1
        and proc.stderr.strip() == "no scores of run 'h' match --reward/--step-min/--step-max"
    )
    proc = rewardq("audit", "health", "h", "--pair", "rule,accuracy", env=env, check=False)
    assert proc.returncode == 2 and "--pair" in proc.stderr and "accuracy" in proc.stderr
    proc = rewardq("audit", "health", "h", "--pair", "rule", env=env, check=False)
    assert proc.returncode == 2 and "two different reward names" in proc.stderr


@pytest.mark.slow
def test_a_real_scoring_run_with_and_without_stored_text(tmp_path: Path) -> None:
    """``rewardq score`` on the embedded worker writes the rows; the well-formed completions are the long
    ones, so ``format`` correlates with length where the text is stored, and without it health says so."""
    from tests.workers.test_cli import write_jsonl

    records = [
        {
            "input": f"q{step}-{i}",
            "output": f"<think>{'a' * (50 + i)}</think><answer>{i}</answer>" if i % 2 else f"bare {i}",
            "gts": str(i),
            "score": 0.0,
            "step": step,
        }
        for step in range(3)
        for i in range(30)
    ]
    source = write_jsonl(tmp_path / "rollouts.jsonl", records)
    for run, env in (("text", {"REWARDQ_STORE_TEXT": "1"}), ("hashes", {})):
        score = ["score", str(source), "-r", "format", "-o", str(tmp_path / f"{run}.jsonl"), "--no-progress"]
        rewardq(*score, "--run-id", run, env=env)
    text = json.loads(rewardq("audit", "health", "text", "--json").stdout)
    assert text["length_unit"] == "characters"
    assert [(s["step"], s["count"], s["statuses"]["ok"]) for s in text["steps"]] == [
        (0, 30, 30),
        (1, 30, 30),
        (2, 30, 30),
    ]
    assert all(s["length"]["n"] == 30 and s["length"]["spearman"] > 0.8 for s in text["steps"])
    hashes = rewardq("audit", "health", "hashes")
    assert "no completion length in the audit: store_text is off" in hashes.stderr
