"""Keys keep runs apart: 401 without a valid key, 403 out of its scope, and a batch id is visible only to
the key that submitted it (to any other it is as unknown as an id never issued)."""

from __future__ import annotations

import uuid

import pytest

from rewardq import RewardClient
from tests.conftest import RedisServer
from tests.gateway.conftest import NOTHING, Keys, Served, enqueued, rows

pytestmark = pytest.mark.slow

BATCH = {"run_id": "team-a-run", "rewards": ["format"], "samples": rows(3)}


def test_no_key_or_a_wrong_key_is_401_on_every_route(gateway: Served, keys: Keys) -> None:
    batch_id = uuid.uuid4().hex
    routes = [
        ("POST", "/v1/score", BATCH),
        ("POST", "/v1/batches", BATCH),
        ("GET", f"/v1/batches/{batch_id}", None),
        ("POST", f"/v1/batches/{batch_id}/collect", None),
        ("GET", "/v1/rewards", None),
    ]
    wrong = keys.a[:-1] + ("x" if keys.a[-1] != "x" else "y")
    for headers in (
        {},
        {"Authorization": f"Bearer {wrong}"},
        {"X-API-Key": wrong},
        {"Authorization": "Basic Zm9v"},
    ):
        with gateway.client(headers=headers) as http:
            for method, path, body in routes:
                answer = http.request(method, path, json=body)
                assert answer.status_code == 401, (method, path, headers, answer.text)
                assert answer.headers["WWW-Authenticate"] == "Bearer"
                assert wrong not in answer.text
    with gateway.client(headers={"X-API-Key": keys.a}) as http:  # the other header works as well
        assert http.get("/v1/rewards").status_code == 200


def test_out_of_scope_is_403_and_enqueues_nothing(
    gateway: Served, keys: Keys, redis_server: RedisServer
) -> None:
    with gateway.client(keys.a) as http:
        other_run = http.post("/v1/score", json={**BATCH, "run_id": "team-b-run"})
        other_reward = http.post("/v1/batches", json={**BATCH, "rewards": {"format": 1.0, "cosine": 1.0}})
    assert other_run.status_code == 403
    assert other_run.json() == {"detail": "this key may not score that run id"}
    assert other_reward.status_code == 403
    assert other_reward.json() == {"detail": "this key may not call reward(s): cosine"}
    assert enqueued(redis_server.url) == NOTHING


def test_a_batch_is_visible_only_to_the_key_that_submitted_it(
    gateway: Served, keys: Keys, client: RewardClient
) -> None:
    with gateway.client(keys.a) as a, gateway.client(keys.b) as b:
        submitted = a.post("/v1/batches", json=BATCH)
        assert submitted.status_code == 202, submitted.text
        batch_id = submitted.json()["batch_id"]
        never_issued = uuid.uuid4().hex
        for batch in (batch_id, never_issued):  # B sees A's batch exactly as a batch that does not exist
            peeked = b.get(f"/v1/batches/{batch}")
            collected = b.post(f"/v1/batches/{batch}/collect", json={"timeout": 30})
            assert (peeked.status_code, collected.status_code) == (404, 404)
            assert peeked.json() == collected.json() == b.get(f"/v1/batches/{never_issued}").json()
        mine = a.post(f"/v1/batches/{batch_id}/collect", json={"timeout": 60})
        assert mine.status_code == 200, mine.text
        assert mine.json()["statuses"] == {"format": ["ok"] * 3}
        again = a.post(f"/v1/batches/{batch_id}/collect", json={"timeout": 60})
        assert again.status_code == 404  # collected: gone, as with ScoreHandle.get
    with pytest.raises(KeyError):
        client.handle(batch_id)
