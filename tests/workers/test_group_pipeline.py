"""Groups and steps end to end: a real `rewardq worker` over a real Redis, the test kinds of
tests/group_kinds.py loaded as a plugin, and every output a trainer or a person reads."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rewardq import RewardClient, Settings
from rewardq.integrations.verl import compute_score
from rewardq.steps import decoder, token_ends
from tests.conftest import RedisServer, WorkerProcess
from tests.group_kinds import rewards_file, steps_of
from tests.tinymodels import build_tokenizer
from tests.workers.test_cli import rewardq, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture
def served(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> Settings:
    """A worker serving ``groups`` and ``steps``; the settings of a client of it (chunks of 2 samples)."""
    config = rewards_file(tmp_path)
    env = {"REWARDQ_COALESCE_WAIT_MS": "200"}  # a flush holds several tasks: their groups stay apart
    start_worker(
        redis_server.url,
        sqlite_url,
        "--rewards",
        "groups,steps",
        "--pool",
        "solo",
        "--config",
        str(config),
        env=env,
    )
    return Settings.from_env(
        {}, broker_url=redis_server.url, database_url=sqlite_url, rewards=config, chunk_size=2
    )


def _audit(settings: Settings, sql: str) -> list[Any]:
    engine = sa.create_engine(str(settings.database_url))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)))
    finally:
        engine.dispose()


def test_groups_stay_whole_with_chunks_smaller_than_a_group(
    served: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = [{"prompt": f"q{i}", "completion": f"a{i}", "group": "u-1"} for i in range(5)]  # one group
    by_prompt = [{"prompt": "p1", "completion": f"b{i}"} for i in range(4)]
    by_prompt += [{"prompt": "p2", "completion": f"c{i}"} for i in range(3)]
    with RewardClient(served) as client:
        first = client.submit(named + by_prompt, "groups", run_id="groups")
        again = client.submit(by_prompt, "groups", run_id="groups")  # the same keys, in another batch
        result, other = first.get(timeout=60), again.get(timeout=60)
    assert result.statuses["groups"] == ["ok"] * 12
    assert result.rewards["groups"] == [5.0] * 5 + [4.0] * 4 + [3.0] * 3
    assert other.rewards["groups"] == [4.0] * 4 + [3.0] * 3
    keys = _audit(served, "SELECT DISTINCT group_key FROM scores WHERE reward = 'groups' ORDER BY group_key")
    assert keys[0][0] == "g:u-1" and all(k[0].startswith("p:") for k in keys[1:]) and len(keys) == 3

    # rescoring a verl dump (its uid field is the group) through chunks of 2 as well
    dump = [{"input": "q", "output": f"o{i}", "gts": "4", "uid": uid} for i, uid in enumerate("aaabbbbc")]
    env = {"REWARDQ_BROKER_URL": str(served.broker_url), "REWARDQ_DATABASE_URL": str(served.database_url)}
    env |= {"REWARDQ_REWARDS": str(served.rewards), "REWARDQ_CHUNK_SIZE": "2"}
    source, out = write_jsonl(tmp_path / "dump.jsonl", dump), tmp_path / "scored.jsonl"
    rewardq("score", str(source), "--reward", "groups", "--out", str(out), "--run-id", "rescore", env=env)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["rewards"]["groups"] for w in written] == [3.0] * 3 + [4.0] * 4 + [1.0]

    # verl: its uid, put in extra_info, is each sample's group
    monkeypatch.setenv("REWARDQ_BROKER_URL", str(served.broker_url))
    monkeypatch.setenv("REWARDQ_DATABASE_URL", str(served.database_url))
    monkeypatch.setenv("REWARDQ_REWARDS", str(served.rewards))
    monkeypatch.setenv("REWARDQ_CHUNK_SIZE", "2")
    uids = ["x", "x", "x", "y", "y"]
    scores = compute_score(
        data_sources=["d"] * 5,
        solution_strs=[f"s{i}" for i in range(5)],
        ground_truths=["4"] * 5,
        extra_infos=[{"uid": uid, "index": 0} for uid in uids],
        rewards={"groups": 1.0},
        run_id="verl-groups",
    )
    assert scores == [3.0, 3.0, 3.0, 2.0, 2.0]


TEXTS = ["first\n\nsecond", "only one", "a\n\nbb\n\nccc"]


def test_step_scores_reach_every_output(
    served: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [{"prompt": "p", "completion": text, "id": f"s{i}"} for i, text in enumerate(TEXTS)]
    expected = [steps_of(text) for text in TEXTS]
    with RewardClient(served) as client:
        result = client.score(rows, {"steps": 1.0}, run_id="steps", timeout=60)
    assert result.steps["steps"] == [list(steps) for steps, _ in expected]
    assert result.step_ends["steps"] == [list(ends) for _, ends in expected]
    assert result.rewards["steps"] == [min(steps) for steps, _ in expected]

    stored = _audit(
        served, "SELECT step_scores, step_ends FROM scores WHERE run_id = 'steps' ORDER BY sample_index"
    )
    assert [(json.loads(s), json.loads(e)) for s, e in stored] == [(list(s), list(e)) for s, e in expected]

    env = {
        "REWARDQ_BROKER_URL": str(served.broker_url),
        "REWARDQ_DATABASE_URL": str(served.database_url),
        "REWARDQ_REWARDS": str(served.rewards),
    }
    shown = rewardq("audit", "sample", "--id", "s2", "--format", "jsonl", env=env).stdout
    [line] = [json.loads(line) for line in shown.splitlines() if line.strip()]
    assert line["step_scores"] == list(expected[2][0]) and line["step_ends"] == list(expected[2][1])

    source = write_jsonl(tmp_path / "in.jsonl", rows)
    rewardq(
        "score",
        str(source),
        "--reward",
        "steps",
        "--out",
        str(tmp_path / "out.jsonl"),
        "--run-id",
        "r",
        env=env,
    )
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [w["reward_steps"] for w in written] == [{"steps": list(steps)} for steps, _ in expected]

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    answers = compute_score(
        data_sources=["d"] * 3,
        solution_strs=TEXTS,
        ground_truths=["4"] * 3,
        rewards={"steps": 1.0},
        run_id="verl-steps",
    )
    assert answers == [
        {"score": min(steps), "steps_steps": list(steps), "steps_step_ends": list(ends)}
        for steps, ends in expected
    ]

    # per sample, with verl's tokenizer named: the step ends are token indices
    tokenizer = build_tokenizer(tmp_path / "tokenizer")
    one = compute_score(
        data_source="d",
        solution_str=TEXTS[2],
        ground_truth="4",
        extra_info={"index": 3},
        rewards={"steps": 1.0},
        run_id="verl-steps",
        tokenizer=str(tmp_path / "tokenizer"),
    )
    ids = tokenizer.encode(TEXTS[2], add_special_tokens=False)
    assert isinstance(one, dict) and one["steps_steps"] == list(expected[2][0])
    assert one["steps_step_ends"] == token_ends(list(expected[2][1]), ids, decoder(tokenizer))


def test_a_chunk_that_overruns_in_a_child_is_scored_again_one_group_at_a_time(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    config = rewards_file(tmp_path)
    start_worker(
        redis_server.url, sqlite_url, "--rewards", "slow", "--concurrency", "1", "--config", str(config)
    )
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, rewards=config)
    rows = [{"prompt": "p1", "completion": f"a{i}"} for i in range(3)]
    rows += [{"prompt": "p2", "completion": f"b{i}"} for i in range(2)]
    with RewardClient(settings) as client:
        result = client.score(rows, "slow", run_id="slow", timeout=60)
    assert result.statuses["slow"] == ["ok"] * 5
    assert result.rewards["slow"] == [3.0, 3.0, 3.0, 2.0, 2.0]  # not 1.0 each: groups, not samples
