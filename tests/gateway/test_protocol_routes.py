"""The foreign protocols' routes against their callers' own client code (tests/vendored/), a real
worker over Redis and the gateway under a real uvicorn: the callers get what RewardClient gives for the
same samples, per-sample calls are coalesced, and keys, scopes and malformed bodies are refused with
nothing enqueued."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from rewardq import RewardClient, Settings
from rewardq.gateway.config import GatewayConfig, KeyConfig, hash_key
from rewardq.results import ScoreResult
from tests.conftest import RedisServer, WorkerProcess
from tests.gateway.conftest import CORRECT, NOTHING, UNFORMATTED, WRONG, Served, enqueued
from tests.vendored import openrlhf_agent, openrlhf_remote_rm, slime_rm_hub, verl_reward_loop

pytestmark = pytest.mark.slow

KEY = "rq_protocols-test-key-0123456789abcdef"
OTHER_RUNS_KEY = "rq_protocols-test-key-for-other-runs-0123"
FORMAT_ONLY_KEY = "rq_protocols-test-key-format-only-012345"
REWARDS = {"accuracy": 1.0, "format": 0.5}
TABLES: dict[str, dict[str, Any]] = {
    "openrlhf": {"rewards": REWARDS, "run_id": "proto-openrlhf"},
    "slime": {"rewards": REWARDS, "run_id": "proto-slime"},
    "slime-dict": {"protocol": "slime", "answer": "dict", "rewards": REWARDS, "run_id": "proto-slime"},
    "verl": {"rewards": {"format": 1.0}, "run_id": "proto-verl"},
}
PROMPT = "What is 2+2? Think, then answer in \\boxed{}."
TEXTS = [CORRECT, WRONG, UNFORMATTED]
MAX_RECORD_BYTES = 4096


def _key(name: str, key: str, runs: list[str], rewards: list[str]) -> KeyConfig:
    return KeyConfig(name=name, hash=hash_key(key), runs=runs, rewards=rewards)


@dataclass
class Gateway:
    port: int
    client: RewardClient
    database_url: str
    redis_url: str

    def url(self, path: str, key: str = KEY) -> str:
        return f"http://rq:{key}@127.0.0.1:{self.port}{path}"

    def expected(self, rows: list[dict[str, Any]], rewards: dict[str, float]) -> ScoreResult:
        """What the Python client gives for the same rows (under a run of its own)."""
        return self.client.submit(rows, rewards, run_id="proto-direct").get(timeout=60)

    def audit(self, run_id: str) -> list[Any]:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                query = sa.text("SELECT batch_id, reward, status FROM scores WHERE run_id = :r")
                return list(conn.execute(query, {"r": run_id}))
        finally:
            engine.dispose()


@pytest.fixture
def gateway(
    redis_server: RedisServer, sqlite_url: str, worker: WorkerProcess, serve: Callable[..., Served]
) -> Iterator[Gateway]:
    """The gateway with the tables above and three keys, in front of a live worker."""
    keys = [
        _key("trainer", KEY, ["proto-"], ["*"]),
        _key("elsewhere", OTHER_RUNS_KEY, ["other-"], ["*"]),
        _key("format-only", FORMAT_ONLY_KEY, ["proto-"], ["format"]),
    ]
    settings = Settings.from_env(
        {}, broker_url=redis_server.url, database_url=sqlite_url, max_record_bytes=MAX_RECORD_BYTES
    )
    with RewardClient(settings) as client:
        served = serve(GatewayConfig(keys=keys, protocols=TABLES), client)
        try:
            yield Gateway(served.port, client, sqlite_url, redis_server.url)
        finally:
            served.stop()  # before its client closes


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"prompt": PROMPT, "completion": TEXTS[i % 3], "solution": "4"} for i in range(n)]


def test_openrlhf_090_posts_a_shard_and_reads_the_clients_scores(gateway: Gateway) -> None:
    rows = _rows(9)
    answer = openrlhf_remote_rm.remote_rm_fn_ray(
        gateway.url("/get_reward"),
        [PROMPT + r["completion"] for r in rows],
        [PROMPT] * len(rows),
        ["4"] * len(rows),
    )
    expected = gateway.expected(rows, REWARDS)
    assert answer["rewards"] == expected.totals == [1.5, 0.5, 1.0] * 3
    assert answer["scores"] == expected.totals
    assert answer["extra_logs"] == expected.rewards
    assert len({r.batch_id for r in gateway.audit("proto-openrlhf")}) == 1


def test_openrlhf_per_sample_requests_are_coalesced_and_each_gets_its_own_scores(gateway: Gateway) -> None:
    rows = _rows(24)
    executor = openrlhf_agent.SingleTurnAgentExecutor(gateway.url("/get_reward"))

    async def fetch_all() -> list[Any]:
        return await asyncio.gather(
            *(executor._fetch_rewards_via_http([PROMPT + r["completion"]], [PROMPT], ["4"]) for r in rows)
        )

    fields = [openrlhf_agent.reward_fields(info) for info in asyncio.run(fetch_all())]
    expected = gateway.expected(rows, REWARDS)
    assert [f["reward"] for f in fields] == [[t] for t in expected.totals]
    assert [f["extra_logs"]["accuracy"] for f in fields] == [[v] for v in expected.rewards["accuracy"]]
    audit = gateway.audit("proto-openrlhf")
    assert len(audit) == 48
    assert len({r.batch_id for r in audit}) < len(rows)


def _slime(url: str, samples: list[SimpleNamespace]) -> list[Any]:
    async def score_all() -> list[Any]:
        try:
            return await asyncio.gather(
                *(slime_rm_hub.remote_rm(SimpleNamespace(rm_url=url), s) for s in samples)
            )
        finally:
            await slime_rm_hub._get_shared_session().close()

    return asyncio.run(score_all())


def test_slime_per_sample_calls_64_at_once_are_coalesced(gateway: Gateway) -> None:
    rows = _rows(64)
    samples = [SimpleNamespace(prompt=PROMPT, response=r["completion"], label="4") for r in rows]
    rewards = _slime(gateway.url("/slime"), samples)
    assert rewards == gateway.expected(rows, REWARDS).totals
    audit = gateway.audit("proto-slime")
    assert len(audit) == 128
    assert len({r.batch_id for r in audit}) < len(rows)


def test_slime_dict_answer_for_reward_key(gateway: Gateway) -> None:
    chat = [{"role": "user", "content": PROMPT}]
    sample = SimpleNamespace(prompt=chat, response=TEXTS[1], label="4")
    (reward,) = _slime(gateway.url("/slime?route=slime-dict"), [sample])
    assert reward == {"reward": 0.5, "accuracy": 0.0, "format": 1.0}


class _VerlWorker(verl_reward_loop.RewardLoopWorker):
    def __init__(self, address: str) -> None:
        rollout = SimpleNamespace(name="vllm")
        self.config = SimpleNamespace(
            reward=SimpleNamespace(reward_model=SimpleNamespace(rollout=rollout, model_path="rm"))
        )
        self.reward_router_address = address

    async def _preprocess_reward_inputs(self, data: Any) -> str:
        return str(data)


def test_verl_reward_loop_classify_calls_get_the_clients_totals(gateway: Gateway) -> None:
    texts = [TEXTS[i % 3] for i in range(16)]
    worker = _VerlWorker(f"rq:{KEY}@127.0.0.1:{gateway.port}")

    async def score_all() -> list[dict[str, Any]]:
        return await asyncio.gather(*(worker.compute_score_disrm(t) for t in texts))

    scores = [out["reward_score"] for out in asyncio.run(score_all())]
    expected = gateway.expected([{"completion": t} for t in texts], {"format": 1.0})
    assert scores == expected.totals == [1.0, 1.0, 0.0] * 5 + [1.0]
    assert len({r.batch_id for r in gateway.audit("proto-verl")}) < len(texts)


VALID = {
    "/get_reward": {"query": [PROMPT + TEXTS[0]], "prompts": [PROMPT], "labels": ["4"]},
    "/slime": {"prompt": PROMPT, "response": TEXTS[0], "label": "4"},
    "/classify": {"model": "rm", "input": TEXTS[0]},
}


@pytest.mark.parametrize("path", sorted(VALID))
def test_keys_are_checked_and_scoped_on_every_route(gateway: Gateway, path: str) -> None:
    url = f"http://127.0.0.1:{gateway.port}{path}"
    with httpx.Client(timeout=60) as http:
        assert http.post(url, json=VALID[path]).status_code == 401
        assert http.post(url, json=VALID[path], auth=("rq", KEY + "x")).status_code == 401
        assert http.post(url, json=VALID[path], headers={"Authorization": "Basic Zm9v"}).status_code == 401
        elsewhere = http.post(url, json=VALID[path], headers={"Authorization": f"Bearer {OTHER_RUNS_KEY}"})
        assert elsewhere.status_code == 403
        assert "proto-" not in elsewhere.text  # the table's run id is not told to a key outside it
        format_only = http.post(url, json=VALID[path], headers={"X-API-Key": FORMAT_ONLY_KEY})
        if path == "/classify":  # verl's table scores format only: that key may use it
            assert format_only.status_code == 200
        else:
            assert format_only.status_code == 403
            assert enqueued(gateway.redis_url) == NOTHING
        assert http.post(url, json=VALID[path], auth=("anyone", KEY)).status_code == 200


MALFORMED = [
    ("/get_reward", {"query": ["a", "b"], "prompts": ["a"]}, "prompts has 1 entries for 2 queries"),
    ("/get_reward", {"query": [PROMPT + "x" * MAX_RECORD_BYTES], "prompts": [PROMPT]}, "query[0]"),
    ("/get_reward", {"prompts": [PROMPT]}, "query"),
    ("/slime", {"prompt": PROMPT, "label": "4"}, "response"),
    ("/slime", {"prompt": PROMPT, "response": 7}, "response"),
    ("/classify", {"model": "rm", "input": [1, 2, 3]}, "input"),
    ("/classify", {"model": "rm"}, "give either input (text) or messages"),
    ("/classify", {"messages": [{"role": "user", "content": "hi"}]}, "messages"),
    ("/get_reward?route=slime", VALID["/get_reward"], "no [gateway.protocols.slime] table serves"),
]


def test_malformed_bodies_are_refused_naming_the_field_and_nothing_is_enqueued(gateway: Gateway) -> None:
    with httpx.Client(timeout=60, auth=("rq", KEY)) as http:
        for path, body, named in MALFORMED:
            reply = http.post(f"http://127.0.0.1:{gateway.port}{path}", json=body)
            assert 400 <= reply.status_code < 500, (path, body, reply.status_code, reply.text)
            assert named in reply.text, (path, body, reply.text)
        assert enqueued(gateway.redis_url) == NOTHING
        good = http.post(f"http://127.0.0.1:{gateway.port}/slime", json=VALID["/slime"])
    assert good.json() == 1.5
    assert len(gateway.audit("proto-slime")) == 2  # the good request's two rewards
