"""Bad input is a 422 that names the field, through the client's own validation, with nothing enqueued."""

from __future__ import annotations

import pytest

from rewardq import InvalidInputError, RewardClient
from tests.conftest import RedisServer
from tests.gateway.conftest import NOTHING, Keys, Served, enqueued, rows

pytestmark = pytest.mark.slow


def test_a_bad_sample_is_422_naming_it_and_its_field(
    gateway: Served, keys: Keys, client: RewardClient, redis_server: RedisServer
) -> None:
    samples = rows(5)
    samples[3] = {"prompt": "no completion here"}
    samples[4] = {"completion": 7}
    with pytest.raises(InvalidInputError) as direct:  # what the Python client says of the same batch
        client.submit(samples, ["format"], run_id="team-a-run")
    with gateway.client(keys.a) as http:
        answer = http.post(
            "/v1/batches", json={"run_id": "team-a-run", "rewards": ["format"], "samples": samples}
        )
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert [d["loc"] for d in detail] == [
        ["body", "samples", 3, "completion"],
        ["body", "samples", 4, "completion"],
    ]
    assert [d["msg"] for d in detail] == [str(p) for p in direct.value.problems]
    assert detail[0]["msg"].startswith("sample 3, field 'completion': missing")
    assert enqueued(redis_server.url) == NOTHING


def test_the_record_limit_holds_per_sample(
    gateway: Served, keys: Keys, client: RewardClient, redis_server: RedisServer
) -> None:
    limit = client.settings.max_record_bytes
    samples = [*rows(2), {"completion": "x" * (limit + 1)}]
    with gateway.client(keys.a) as http:
        answer = http.post(
            "/v1/score", json={"run_id": "team-a-run", "rewards": ["format"], "samples": samples}
        )
    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["loc"] == ["body", "samples", 2]
    assert f"over the limit of {limit}" in problem["msg"]
    assert enqueued(redis_server.url) == NOTHING


def test_request_fields_are_checked_as_the_client_checks_them(
    gateway: Served, keys: Keys, redis_server: RedisServer
) -> None:
    batch = {"rewards": ["format"], "samples": rows(2)}
    with gateway.client(keys.a) as a, gateway.client(keys.b) as b:
        long_run = a.post("/v1/score", json={**batch, "run_id": "team-a-" + "x" * 300})
        surrogate = a.post(  # through the run's scorer pins (a Redis key) it was a 500
            "/v1/score",
            content='{"run_id": "team-a-\\ud800", "rewards": ["format"], "samples": [{"completion": "a"}]}',
            headers={"Content-Type": "application/json"},
        )
        bad_step = a.post("/v1/score", json={**batch, "run_id": "team-a-run", "step": -1})
        empty = a.post("/v1/score", json={**batch, "run_id": "team-a-run", "samples": []})
        weight = a.post("/v1/score", json={**batch, "run_id": "team-a-run", "rewards": {"format": 1e9}})
        unknown = b.post("/v1/score", json={**batch, "run_id": "team-b-run", "rewards": ["nope"]})
        not_json = a.post("/v1/score", content=b"{", headers={"Content-Type": "application/json"})
    answers = (long_run, surrogate, bad_step, empty, weight, unknown, not_json)
    assert [r.status_code for r in answers] == [422] * 7
    assert long_run.json()["detail"][0]["loc"] == surrogate.json()["detail"][0]["loc"] == ["body", "run_id"]
    assert bad_step.json()["detail"][0]["loc"] == ["body", "step"]
    assert empty.json()["detail"][0]["loc"] == ["body", "samples"]
    assert weight.json()["detail"][0]["loc"] == ["body", "rewards", "format"]
    # Only the name asked for: the gateway's other rewards are none of this key's business.
    assert unknown.json()["detail"] == [
        {"type": "unknown_reward", "loc": ["body", "rewards"], "msg": "unknown reward 'nope'"}
    ]
    assert enqueued(redis_server.url) == NOTHING
