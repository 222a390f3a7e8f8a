"""The ``reward_model`` kind through real ``rewardq worker`` processes: start-up errors, scoring over
Redis into the audit store, and small tasks coalesced into shared forward passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rewardq import RewardClient, Settings
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.models.reward_model import RewardModelOptions, RewardModelReward
from tests.conftest import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow

LONG_PROMPT = "Please rate the following response on a scale of 0 to 10. " * 12
MAX_LENGTH = 96


def rewards_file(tmp_path: Path, model: Path, **options: Any) -> Path:
    lines = ["[rewards.rm]", 'kind = "reward_model"', f'model = "{model}"']
    lines += [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in options.items()]
    path = tmp_path / "rewards.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_worker_until_exit(config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env.update(
        {
            # Set-up happens before the worker connects: an unreachable broker is never reached.
            "REWARDQ_BROKER_URL": "redis://127.0.0.1:1/0",
            "REWARDQ_DATABASE_URL": f"sqlite:///{tmp_path / 'audit.db'}",
            "REWARDQ_HOME": str(tmp_path / "home"),
            "COLUMNS": "1000",  # no wrapped error lines
        }
    )
    rewardq = str(Path(sys.executable).with_name("rewardq"))
    return subprocess.run(
        [rewardq, "worker", "--rewards", "rm", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "not found"),
        ("causal_lm", "no sequence-classification head"),
        ("three_labels", "has 3 labels"),
        ("no_template", "no chat template"),
    ],
)
def test_a_model_that_cannot_serve_fails_the_worker_at_start(
    case: str, expected: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    model = {
        "missing": lambda: tmp_path / "no-such-model",
        "causal_lm": lambda: request.getfixturevalue("causal_lm"),
        "three_labels": lambda: request.getfixturevalue("classifier_three_labels"),
        "no_template": lambda: request.getfixturevalue("classifier_without_template"),
    }[case]()
    done = run_worker_until_exit(rewards_file(tmp_path, model), tmp_path)
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0
    assert "'rm'" in output
    assert str(model) in output
    assert expected in output
    assert "ready." not in output


def _samples() -> list[dict[str, Any]]:
    """Short samples, one whose prompt is cut to fit MAX_LENGTH, one whose completion cannot fit."""
    rows: list[dict[str, Any]] = [
        {"prompt": f"What is {i} + {i}?", "completion": f"The answer is {2 * i}.", "id": f"s{i}"}
        for i in range(10)
    ]
    rows.append({"prompt": LONG_PROMPT, "completion": "Seven.", "id": "cut"})
    rows.append({"prompt": "Hi", "completion": "The quick brown fox jumps. " * 30, "id": "too-long"})
    return rows


def _in_process(model: Path, rows: list[dict[str, Any]], **options: Any) -> RewardModelReward:
    reward = RewardModelReward("rm", RewardModelOptions(model=str(model), **options))
    reward.setup(WorkerResources(Settings()))
    return reward


def _audit(database_url: str, run_id: str) -> list[Any]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT sample_index, sample_id, scorer, value, status, truncated, prompt_tokens "
                        "FROM scores WHERE run_id = :run AND reward = 'rm' ORDER BY sample_index"
                    ),
                    {"run": run_id},
                )
            )
    finally:
        engine.dispose()


def test_scores_over_redis_equal_in_process_scores_and_are_audited(
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    classifier_right: Path,
    tmp_path: Path,
) -> None:
    config = rewards_file(tmp_path, classifier_right, max_length=MAX_LENGTH, token_budget=512)
    start_worker(redis_server.url, sqlite_url, "--rewards", "rm", "--config", str(config))
    rows = _samples()
    settings = Settings.from_env(
        {}, broker_url=redis_server.url, database_url=sqlite_url, chunk_size=5, rewards=config
    )
    with RewardClient(settings) as client:
        result = client.score(rows, {"rm": 1.0}, run_id="rm-run", step=1, timeout=120)

    reward = _in_process(classifier_right, rows, max_length=MAX_LENGTH, token_budget=512)
    expected = reward.score([Sample(prompt=r["prompt"], completion=r["completion"]) for r in rows])
    assert result.statuses["rm"] == [s.status for s in expected]
    assert result.statuses["rm"][-2:] == ["ok", "unscorable"]
    for got, want in zip(result.rewards["rm"], expected, strict=True):
        assert got == pytest.approx(want.value, abs=1e-5) if want.value is not None else got is None

    audit = _audit(sqlite_url, "rm-run")
    assert len(audit) == len(rows)
    assert {row.scorer for row in audit} == {reward.fingerprint}
    by_id = {row.sample_id: row for row in audit}
    assert bool(by_id["cut"].truncated) is True
    assert bool(by_id["s0"].truncated) is False
    assert by_id["too-long"].status == "unscorable"
    assert by_id["s0"].prompt_tokens > 0


def test_small_tasks_waiting_together_share_forward_passes(
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    classifier_right: Path,
    tmp_path: Path,
) -> None:
    config = rewards_file(tmp_path, classifier_right, token_budget=4096)
    rows = [
        {"prompt": f"What is {i} + 1?", "completion": f"It is {i + 1}.", "id": f"s{i}"} for i in range(32)
    ]
    settings = Settings.from_env(
        {}, broker_url=redis_server.url, database_url=sqlite_url, chunk_size=4, rewards=config, serve_wait=0
    )
    with RewardClient(settings) as client:
        # Eight 4-sample tasks of rm (and eight of a rule reward) wait on the queues before the worker
        # starts: the worker takes them together.
        handle = client.submit(rows, {"rm": 1.0, "format": 1.0}, run_id="coalesce", step=0)
        worker = start_worker(
            redis_server.url,
            sqlite_url,
            "--rewards",
            "rm,format",
            "--config",
            str(config),
            env={
                "REWARDQ_LOG_LEVEL": "INFO",
                "REWARDQ_COALESCE_TASKS": "8",
                "REWARDQ_COALESCE_WAIT_MS": "5000",
            },
        )
        result = handle.get(timeout=120)
        del handle  # its pending results are released while the client can still reach Redis

    reward = _in_process(classifier_right, rows, token_budget=4096)
    alone = [reward.score([Sample(prompt=r["prompt"], completion=r["completion"])])[0].value for r in rows]
    assert result.rewards["rm"] == pytest.approx(alone, abs=1e-5)
    assert result.statuses["format"] == ["ok"] * 32

    log = worker.output()
    assert "coalesced 8 tasks of reward rm: 32 samples in one call" in log
    passes = [int(n) for n in re.findall(r"reward rm: 32 samples in (\d+) forward passes", log)]
    assert passes == [1], "the eight tasks ran in one forward pass"
    assert "of reward format" not in log, "rule rewards keep the ordinary task path"
    audit = _audit(sqlite_url, "coalesce")
    assert [row.sample_index for row in audit] == list(range(32))
    assert {row.sample_id for row in audit} == {f"s{i}" for i in range(32)}


@pytest.mark.gpu
def test_a_token_budget_the_gpu_cannot_hold_fails_the_worker_at_start(
    tmp_path: Path, classifier_right: Path
) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    # The warm-up runs a full budget: 2**20 rows of 2048 tokens cannot fit on any GPU.
    config = rewards_file(tmp_path, classifier_right, max_length=2048, token_budget=2**31)
    done = run_worker_until_exit(config, tmp_path)
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0
    assert "'rm'" in output
    assert str(classifier_right) in output
    assert "out of memory" in output
