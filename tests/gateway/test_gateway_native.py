"""The native API against a real worker: the same scores, statuses and nulls as RewardClient."""

from __future__ import annotations

import pytest

from rewardq import RewardClient
from tests.gateway.conftest import Keys, Served, rows

pytestmark = pytest.mark.slow


def test_score_matches_the_python_client(gateway: Served, keys: Keys, client: RewardClient) -> None:
    samples = rows(10)
    weights = {"accuracy": 1.0, "format": 0.5}
    expected = client.score(samples, weights, run_id="team-a-direct", step=1, timeout=60)
    with gateway.client(keys.a) as http:
        answer = http.post(
            "/v1/score", json={"run_id": "team-a-run", "step": 1, "rewards": weights, "samples": samples}
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["rewards"] == expected.rewards
    assert body["statuses"] == expected.statuses
    assert body["totals"] == expected.totals
    assert body["weights"] == expected.weights
    assert answer.headers["X-Request-ID"]
