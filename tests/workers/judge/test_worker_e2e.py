"""A ``judge`` reward end to end: a real ``rewardq worker`` over a private Redis, a fake judge server,
the audit rows checked (raw reply, cache hit, HTTP attempts, replica, tokens, template hash)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rewardq import RewardClient, Settings
from tests.conftest import RedisServer, WorkerProcess
from tests.fake_openai import FakeOpenAI, Request, failing, from_text

pytestmark = pytest.mark.slow


def judge_reply(request: Request) -> str:
    if "rambling" in request.user_text:
        return "I am not sure what to make of this."
    return "Correct. [[9]]" if "4" in request.user_text else "Wrong. [[1]]"


def rows(database_url: str, run_id: str) -> list[Any]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT step, sample_index, value, status, error, raw, cache_hit, http_attempts,"
                        " replica, prompt_tokens, completion_tokens, template_hash, scorer"
                        " FROM scores WHERE run_id = :run ORDER BY step, sample_index"
                    ),
                    {"run": run_id},
                )
            )
    finally:
        engine.dispose()


def test_judge_through_a_worker_is_audited_and_cached_across_tasks(
    redis_server: RedisServer,
    sqlite_url: str,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    with FakeOpenAI(failing(1, 503, from_text(judge_reply))) as server:
        config = tmp_path / "rewards.toml"
        config.write_text(
            "[rewards.judge]\n"
            'kind = "judge"\n'
            f'base_url = "{server.base_url}"\n'
            'template = "Question: {prompt}\\nAnswer: {completion}\\nGrade it as [[n]] from 0 to 10."\n'
            "score_range = [0, 10]\n"
            "reask = 0\n"
            "max_retries = 2\n"
        )
        start_worker(
            redis_server.url, sqlite_url, "--config", str(config), "--rewards", "judge", "--concurrency", "2"
        )
        settings = Settings.from_env(
            {}, broker_url=redis_server.url, database_url=sqlite_url, chunk_size=3, rewards=config
        )
        batch = [
            {"prompt": "2+2?", "completion": c, "id": f"s{i}"}
            for i, c in enumerate(["4", "5", "4", "rambling", "4", "5"])
        ]
        with RewardClient(settings) as client:
            first = client.score(batch, {"judge": 1.0}, run_id="judge-e2e", step=1, timeout=120)
            asked_first = len(server.chat_requests)
            second = client.score(batch, {"judge": 1.0}, run_id="judge-e2e", step=2, timeout=120)

    expected = [0.9, 0.1, 0.9, None, 0.9, 0.1]
    for result in (first, second):
        assert result.statuses["judge"] == ["ok", "ok", "ok", "error", "ok", "ok"]
        assert result.rewards["judge"] == [pytest.approx(v) if v is not None else None for v in expected]

    # Each request fails once with 503 first. In step 1 the two chunks may both ask for "4" and "5" when
    # they run at once (dedupe is per task); in step 2 only the unparsed one is asked again, the rest
    # come from the cache in Redis.
    def answers(requests: list[Request]) -> list[str]:
        return [r.user_text.split("Answer: ")[1].split("\n")[0] for r in requests if r.retry_count == 0]

    assert set(answers(server.chat_requests[:asked_first])) == {"4", "5", "rambling"}
    assert answers(server.chat_requests[asked_first:]) == ["rambling"]

    audit = rows(sqlite_url, "judge-e2e")
    assert len(audit) == 12
    step1, step2_rows = audit[:6], audit[6:]
    bad = step1[3]
    assert (bad.status, bad.raw, bad.cache_hit, bad.http_attempts) == (
        "error",
        "I am not sure what to make of this.",
        False,
        2,
    )
    assert bad.error.startswith("parse_error")
    sent = [r for r in step1 if not r.cache_hit]
    assert all(r.http_attempts == 2 and r.replica == server.base_url and r.prompt_tokens == 11 for r in sent)
    assert all(r.http_attempts == 0 for r in step1 if r.cache_hit)
    assert {r.raw for r in step1 if r.status == "ok"} == {"Correct. [[9]]", "Wrong. [[1]]"}
    assert [bool(r.cache_hit) for r in step2_rows] == [True, True, True, False, True, True]
    assert all(r.http_attempts == 0 and r.raw is not None for r in step2_rows if r.cache_hit)
    assert len({r.template_hash for r in audit}) == 1 and audit[0].template_hash
    assert len({r.scorer for r in audit}) == 1 and audit[0].scorer.startswith("judge@")
