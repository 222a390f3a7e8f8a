"""Per-turn rewards through a real ``rewardq worker`` and Redis, in chunks smaller than the batch: a rule
kind in its killable children and a reward model in the worker process give each conversation the
``turn_aggregate`` of the scores its prefixes get as samples of their own."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rewardq import RewardClient, Settings
from rewardq.workers.rewards.turns import NO_TURN
from tests.conftest import RedisServer, WorkerProcess
from tests.workers.rewards.test_turns import AGENT, SWIFT, prefixes

pytestmark = pytest.mark.slow

AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "last": lambda values: values[-1],
    "min": min,
    "mean": lambda values: math.fsum(values) / len(values),
    "max": max,
    "prod": math.prod,
}
NO_TURN_ROW = {
    "prompt": [{"role": "user", "content": "Look it up."}],
    "completion": [{"role": "tool", "content": "42"}],
}
ROWS = [AGENT, SWIFT, NO_TURN_ROW, {"prompt": "Hi", "completion": "hi hi hi hi there"}]


def rewards_file(tmp_path: Path, model: Path) -> Path:
    repetition = 'kind = "repetition"\nrepetition_n_grams = 2\n'
    reward_model = f'kind = "reward_model"\nmodel = "{model}"\n'
    tables = [f"[rewards.repetition]\n{repetition}", f"[rewards.rm]\n{reward_model}"]
    tables += [
        f'[rewards.rep_{how}]\n{repetition}per_turn = true\nturn_aggregate = "{how}"\n' for how in AGGREGATES
    ]
    tables.append(f'[rewards.rm_turns]\n{reward_model}per_turn = true\nturn_aggregate = "min"\n')
    path = tmp_path / "rewards.toml"
    path.write_text("".join(tables))
    return path


def test_per_turn_values_over_redis_are_the_aggregate_of_each_prefix_scored_alone(
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    classifier_right: Path,
    tmp_path: Path,
) -> None:
    config = rewards_file(tmp_path, classifier_right)
    per_turn = [f"rep_{how}" for how in AGGREGATES] + ["rm_turns"]
    names = ["repetition", "rm", *per_turn]
    start_worker(
        redis_server.url, sqlite_url, "--rewards", ",".join(names), "--pool", "solo", "--config", str(config)
    )
    settings = Settings.from_env(
        {}, broker_url=redis_server.url, database_url=sqlite_url, chunk_size=2, rewards=config
    )
    split = [prefixes(row) if row is not NO_TURN_ROW else [] for row in ROWS]
    with RewardClient(settings) as client:
        turns = client.score(ROWS, per_turn, run_id="turns", step=0, timeout=120)
        alone = client.score(
            [p for rows in split for p in rows], ["repetition", "rm"], run_id="alone", timeout=120
        )

    def per_row(values: list[Any]) -> list[list[float]]:
        out, start = [], 0
        for rows in split:
            out.append(values[start : start + len(rows)])
            start += len(rows)
        return out

    assert set(alone.statuses["repetition"]) == set(alone.statuses["rm"]) == {"ok"}
    rep, rm = per_row(alone.rewards["repetition"]), per_row(alone.rewards["rm"])
    assert len(set(rep[0])) > 1 and len(set(rep[1])) > 1, "turns that score differently"
    for how, aggregate in AGGREGATES.items():
        name = f"rep_{how}"
        assert turns.statuses[name] == ["ok", "ok", "unscorable", "ok"], name
        assert turns.errors[name][2] == NO_TURN
        expected = [aggregate(values) if values else None for values in rep]
        assert turns.rewards[name] == pytest.approx(expected), name
    assert turns.statuses["rm_turns"] == ["ok", "ok", "unscorable", "ok"]
    expected_rm = [min(values) if values else None for values in rm]
    assert turns.rewards["rm_turns"] == pytest.approx(expected_rm, abs=1e-5)
