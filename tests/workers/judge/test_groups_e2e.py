"""``pairwise_judge`` and ``group_judge`` end to end: a real ``rewardq worker`` over a private Redis scores
groups named by an explicit ``group`` field and groups of repeated prompts, with a chunk size (3) smaller than
a group (4), against a fake judge with a hidden quality per completion and a position bias; the audit rows
hold each member's comparisons and its group."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from rewardq import RewardClient, Settings
from tests.conftest import RedisServer, WorkerProcess
from tests.fake_openai import FakeOpenAI, Reply, Request, biased_pairwise, listwise

pytestmark = pytest.mark.slow

ORDERS = ([2, 0, 3, 1], [1, 3, 0, 2], [3, 2, 1, 0], [0, 1, 2, 3])  # hidden qualities, per group
# With a margin of 1.5, neighbours in quality are too close for the biased judge: both orders of such a
# pair answer "the first shown" and count as ties, every other pair is won by the better completion.
WINRATE = {0: 1 / 6, 1: 2 / 6, 2: 4 / 6, 3: 5 / 6}


def quality(text: str) -> float:
    return float(text.rsplit(" ", 1)[1])


def rows() -> list[dict[str, Any]]:
    """Two groups named by ``group`` that share one prompt (by prompt they would be one group of 8), then
    two groups of repeated prompts."""
    named = [
        {"prompt": "Prove it.", "completion": f"proof of quality {q}", "group": name}
        for name, order in (("uid-1", ORDERS[0]), ("uid-2", ORDERS[1]))
        for q in order
    ]
    repeated = [
        {"prompt": prompt, "completion": f"answer of quality {q}"}
        for prompt, order in (("Sum it.", ORDERS[2]), ("Sort it.", ORDERS[3]))
        for q in order
    ]
    return named + repeated


def test_groups_are_judged_through_a_worker_and_audited(
    redis_server: RedisServer,
    sqlite_url: str,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    pairwise, graded = biased_pairwise(quality, margin=1.5), listwise(quality)

    async def behave(request: Request) -> Reply | None:
        return await (pairwise if "[RESPONSE A]" in request.user_text else graded)(request)

    with FakeOpenAI(behave) as server:
        config = tmp_path / "rewards.toml"
        config.write_text(
            f'[rewards.pairwise]\nkind = "pairwise_judge"\nbase_url = "{server.base_url}"\n\n'
            f'[rewards.listwise]\nkind = "group_judge"\nbase_url = "{server.base_url}"\nshuffles = 2\n'
        )
        start_worker(
            redis_server.url,
            sqlite_url,
            "--config",
            str(config),
            "--rewards",
            "pairwise,listwise",
            "--pool",
            "threads",
        )
        settings = Settings.from_env(
            {}, broker_url=redis_server.url, database_url=sqlite_url, chunk_size=3, rewards=config
        )
        with RewardClient(settings) as client:
            result = client.score(
                rows(), {"pairwise": 1.0, "listwise": 1.0}, run_id="groups-e2e", timeout=120
            )

    hidden = [q for order in ORDERS for q in order]
    assert result.statuses["pairwise"] == ["ok"] * 16 and result.statuses["listwise"] == ["ok"] * 16
    assert result.rewards["pairwise"] == pytest.approx([WINRATE[q] for q in hidden])
    assert result.rewards["listwise"] == pytest.approx([q / 10 for q in hidden])

    engine = sa.create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            audit = list(
                conn.execute(
                    sa.text(
                        "SELECT sample_index, raw, scorer, group_key FROM scores WHERE run_id = 'groups-e2e'"
                        " AND reward = 'pairwise' ORDER BY sample_index"
                    )
                )
            )
    finally:
        engine.dispose()
    assert len(audit) == 16 and all(row.scorer.startswith("pairwise_judge@") for row in audit)
    details = [orjson.loads(row.raw) for row in audit]
    assert [d["member"] for d in details] == [0, 1, 2, 3] * 4
    groups = [row.group_key for row in audit]
    assert len(set(groups)) == 4 and all(len(set(groups[g : g + 4])) == 1 for g in range(0, 16, 4))
    assert all(len(d["comparisons"]) == 6 and d["wins"] + d["ties"] + d["losses"] == 6 for d in details)
    assert sum(d["inconsistent"] for d in details) == 4 * 3 * 4  # 3 close pairs a group, 2 members, 2 orders
