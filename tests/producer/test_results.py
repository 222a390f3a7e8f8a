"""Weighted totals and per-sample records."""

from rewardq import ScoreResult, weighted_total


def test_weighted_total_skips_missing_values_and_zero_weights() -> None:
    weights = {"a": 1.0, "b": 0.5, "log_only": 0.0}
    assert weighted_total({"a": 1.0, "b": 1.0, "log_only": 9.0}, weights) == 1.5
    assert weighted_total({"a": None, "b": 1.0, "log_only": 9.0}, weights) == 0.5
    assert weighted_total({"a": None, "b": None, "log_only": 9.0}, weights) is None


def test_score_result_records_and_counts() -> None:
    result = ScoreResult(
        "b1",
        {"acc": 1.0, "fmt": 0.5},
        {"acc": [1.0, None], "fmt": [0.0, 1.0]},
        {"acc": ["ok", "unscorable"], "fmt": ["ok", "ok"]},
        {"acc": {1: "no solution"}, "fmt": {}},
    )
    assert result.totals == [1.0, 0.5]
    assert len(result) == 2
    assert result.record(0) == {
        "rewards": {"acc": 1.0, "fmt": 0.0},
        "reward": 1.0,
        "reward_status": {"acc": "ok", "fmt": "ok"},
    }
    assert result.record(1)["reward_errors"] == {"acc": "no solution"}
    assert result.status_counts() == {"acc": {"ok": 1, "unscorable": 1}, "fmt": {"ok": 2}}
