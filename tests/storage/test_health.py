"""``run_health``: a run's reward-health signals, on rows the real writer wrote to SQLite and PostgreSQL;
and ``HealthCollector``, the same signals of the last step, scraped through prometheus-client."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import ks_2samp
from sqlalchemy import Engine

from rewardq.storage import DriftTest, run_health, step_stats, write_scores
from rewardq.storage.health_metrics import HealthCollector
from rewardq.storage.signals import drift_by_step, ks_drift, spearman
from tests.score_rows import sha256

JUDGE_TEMPLATE = "f" * 64


def write(engine: Engine, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        write_scores(conn, rows)


def sample(step: int, i: int, **overrides: Any) -> dict[str, Any]:
    """The columns that name sample ``i`` of ``step`` in run ``h``, the same for each of its rewards."""
    return {
        "run_id": "h",
        "step": step,
        "batch_id": f"h-{step}",
        "sample_index": i,
        "sample_hash": sha256(f"h {step} {i}"),
        **overrides,
    }


def health(engine: Engine, **kwargs: Any) -> Any:
    with engine.connect() as conn:
        return run_health(conn, "h", **kwargs)


def test_counts_per_status_and_the_spread_of_values(
    engine: Engine, make_row: Callable[..., dict[str, Any]]
) -> None:
    statuses = ["ok"] * 7 + ["error"] * 2 + ["timeout", "unscorable", "unscorable", "unscorable"]
    values = [0.1, 0.9, 0.4, 0.3, 0.7, 0.2, 0.5]
    rows = []
    for i, status in enumerate(statuses):
        value = values[i] if status == "ok" else None
        rows.append(make_row(i, **sample(3, i), reward="rm", status=status, value=value, error=None))
    rows += [make_row(i, **sample(4, i), reward="rm", value=1.0) for i in range(2)]
    write(engine, rows)
    first, second = health(engine).steps
    assert (first.step, first.reward, first.count) == (3, "rm", 13)
    assert dict(first.statuses) == {"ok": 7, "unscorable": 3, "error": 2, "timeout": 1}
    assert first.mean == pytest.approx(np.mean(values))
    assert first.std == pytest.approx(np.std(values))
    assert (first.p10, first.p90) == (pytest.approx(np.percentile(values, 10)), pytest.approx(0.78))
    assert dict(second.statuses) == {"ok": 2, "unscorable": 0, "error": 0, "timeout": 0}
    assert (second.std, second.p10, second.p90) == (0.0, 1.0, 1.0)


def test_counts_and_moments_are_those_of_audit_stats_on_a_resumed_run(
    engine: Engine, make_row: Callable[..., dict[str, Any]]
) -> None:
    """A first pass with an error, a sample sent twice and a timeout; the resumed pass (a new batch) scored
    the error ok: health counts the rows that stand, as step_stats does."""
    rows = [
        make_row(0, batch_id="c1", value=1.0),
        make_row(1, batch_id="c1", value=None, status="error", error="judge down"),
        make_row(2, batch_id="c1", value=0.0),
        make_row(3, batch_id="c1", value=1.0),
        make_row(4, batch_id="c1", value=1.0, sample_hash=make_row(3)["sample_hash"]),
        make_row(5, batch_id="c1", value=None, status="timeout", error="deadline"),
    ]
    write(engine, rows)
    write(engine, [make_row(0, batch_id="c2", sample_hash=make_row(1)["sample_hash"], value=0.5)])
    with engine.connect() as conn:
        [expected] = step_stats(conn, "run-a")
        [got] = run_health(conn, "run-a").steps
    assert (got.count, dict(got.statuses)) == (expected.count, dict(expected.statuses))
    assert dict(got.statuses) == {"ok": 5, "unscorable": 0, "error": 0, "timeout": 1}
    assert got.mean == pytest.approx(expected.mean) and got.std == pytest.approx(expected.std)


def length_rows(make_row: Callable[..., dict[str, Any]], *, text: bool) -> list[dict[str, Any]]:
    """Step 0 of run h: ``hacked`` grows with the completion's length (with noise), ``honest`` does not;
    a judge's own reply tokens fall with it (they must not be read as the completion's length)."""
    rng = random.Random(7)
    rows = []
    for i in range(200):
        length = rng.randint(20, 2000)
        common = sample(0, i, completion_text="y" * length if text else None)
        tokens = None if text else length // 4
        rows.append(
            make_row(
                i,
                **common,
                reward="hacked",
                value=length / 2000 + rng.gauss(0, 0.05),
                completion_tokens=tokens,
            )
        )
        rows.append(make_row(i, **common, reward="honest", value=rng.random(), completion_tokens=tokens))
        rows.append(
            make_row(
                i,
                **common,
                reward="judge",
                value=rng.random(),
                completion_tokens=3000 - length,
                template_hash=JUDGE_TEMPLATE,
            )
        )
    return rows


@pytest.mark.parametrize("text", [True, False], ids=["store_text", "tokens"])
def test_a_reward_that_grows_with_length_has_a_high_length_correlation(
    engine: Engine, make_row: Callable[..., dict[str, Any]], text: bool
) -> None:
    write(engine, length_rows(make_row, text=text))
    result = health(engine)
    assert result.length_unit == ("characters" if text else "tokens")
    by_reward = {s.reward: s for s in result.steps}
    assert by_reward["hacked"].length_spearman > 0.9
    assert abs(by_reward["honest"].length_spearman) < 0.2
    assert abs(by_reward["judge"].length_spearman) < 0.2  # its reply tokens (-length) were not used
    assert by_reward["hacked"].length_n == 200


def test_without_text_or_completion_tokens_there_is_no_length_and_it_says_so(
    engine: Engine, make_row: Callable[..., dict[str, Any]]
) -> None:
    write(engine, [make_row(i, **sample(0, i), value=i / 10) for i in range(10)])
    write(
        engine,
        [
            make_row(i, **sample(0, i), reward="judge", completion_tokens=i, template_hash=JUDGE_TEMPLATE)
            for i in range(10)
        ],
    )
    result = health(engine)
    assert result.length_unit is None
    assert all(s.length_spearman is None and s.length_n == 0 for s in result.steps)
    assert "store_text is off" in result.as_json()["length_note"]


def test_agreement_is_high_for_agreeing_rewards_and_low_for_unrelated_ones(
    engine: Engine, make_row: Callable[..., dict[str, Any]]
) -> None:
    rng = random.Random(3)
    rows = []
    for step in range(2):
        for i in range(150):
            rule = float(rng.random() < 0.5)
            common = sample(step, i)
            rows.append(make_row(i, **common, reward="rule", value=rule))
            rows.append(make_row(i, **common, reward="judge", value=0.6 * rule + 0.4 * rng.random()))
            rows.append(make_row(i, **common, reward="other", value=rng.random()))
    rows.append(make_row(999, **sample(1, 999), reward="judge", value=1.0))  # judged, not ruled: unpaired
    write(engine, rows)
    result = health(engine)
    pairs = {(a.step, a.reward_a, a.reward_b): a for a in result.agreements}
    assert len(pairs) == 6  # 2 steps x 3 pairs, names in order
    for step in range(2):
        assert pairs[(step, "judge", "rule")].spearman > 0.8
        assert abs(pairs[(step, "other", "rule")].spearman) < 0.25
        assert abs(pairs[(step, "judge", "other")].spearman) < 0.25
    assert pairs[(1, "judge", "rule")].n == 150
    chosen = health(engine, pairs=[("rule", "judge")]).agreements
    assert [(a.step, a.reward_a, a.reward_b) for a in chosen] == [(0, "rule", "judge"), (1, "rule", "judge")]


def shifted_rows(make_row: Callable[..., dict[str, Any]], k: int, steps: int) -> list[dict[str, Any]]:
    """``steps`` steps of 60 samples of ``rm`` drawn alike, except from step ``k`` on, where 0.3 is added."""
    rng = random.Random(11)
    return [
        make_row(i, **sample(step, i), reward="rm", value=rng.gauss(0, 1) * 0.2 + (0.3 if step >= k else 0.0))
        for step in range(steps)
        for i in range(60)
    ]


@pytest.mark.parametrize("window", [None, 3])
def test_a_planted_shift_at_step_k_flags_drift_at_k_and_not_before(
    engine: Engine, make_row: Callable[..., dict[str, Any]], window: int | None
) -> None:
    k = 6
    write(engine, shifted_rows(make_row, k, 8))
    steps = health(engine, test=DriftTest(window=window)).steps
    flagged = [s.step for s in steps if s.drift is not None and s.drift.flagged]
    assert flagged[0] == k, flagged
    assert steps[0].drift is None  # nothing earlier to compare with
    shifted = steps[k].drift
    assert shifted is not None and shifted.p < 0.001 and shifted.mean_shift > 0.2
    assert shifted.reference == 60 * (k if window is None else window)
    few = health(engine, test=DriftTest(min_count=61)).steps
    assert all(s.drift is None for s in few)  # a step of 60 values is not tested


def test_the_ks_statistic_and_p_value_are_scipy_ks_2samp_asymptotic() -> None:
    rng = np.random.default_rng(5)
    cases = [
        (rng.normal(0, 1, 50), rng.normal(0.3, 1, 400)),
        (rng.integers(0, 2, 80).astype(float), rng.integers(0, 2, 300).astype(float)),  # ties
        (rng.uniform(0, 1, 25), rng.uniform(0, 1, 25)),
    ]
    for a, b in cases:
        drift = ks_drift(np.sort(a), np.sort(b), DriftTest())
        expected = ks_2samp(a, b, method="asymp")
        assert drift is not None
        assert drift.ks == pytest.approx(expected.statistic)
        assert drift.p == pytest.approx(expected.pvalue)
    series = [(s, np.sort(rng.normal(0, 1, 30))) for s in (0, 1, 5)]
    by_step = drift_by_step(series, DriftTest(window=2))
    assert by_step[0] is None and by_step[1] is not None and by_step[5] is None  # steps 3 and 4: none


def test_spearman_averages_ties_and_needs_three_varying_pairs() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.8944271909999159)
    assert spearman([1, 2], [2, 1]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_collector_serves_the_last_steps_signals_as_gauges(
    engine: Engine, make_row: Callable[..., dict[str, Any]]
) -> None:
    k = 6
    rows = shifted_rows(make_row, k, k + 1)
    rows += [
        make_row(i, **sample(k, i), reward="judge", value=r["value"] * 2) for i, r in enumerate(rows[-60:])
    ]
    rows += [make_row(60, **sample(k, 60), reward="judge", value=None, status="error", error="judge down")]
    write(engine, rows)
    registry = CollectorRegistry()
    registry.register(HealthCollector(engine, ["h", "no-such-run"], window=3))
    got = scrape(registry)
    with engine.connect() as conn:
        expected = run_health(conn, "h", test=DriftTest(window=3))
    rm = next(s for s in expected.steps if s.step == k and s.reward == "rm")
    assert rm.drift is not None and rm.drift.flagged

    def gauge(name: str, **labels: str) -> float:
        return got[(f"rewardq_health_{name}", tuple(sorted({"run": "h", **labels}.items())))]

    assert gauge("step") == k
    assert gauge("scores", reward="judge", status="ok") == 60
    assert gauge("scores", reward="judge", status="error") == 1
    assert gauge("scores", reward="rm", status="ok") == 60
    assert gauge("value_mean", reward="rm") == pytest.approx(rm.mean)
    assert gauge("value_p90", reward="rm") == pytest.approx(rm.p90)
    assert gauge("drift", reward="rm") == 1.0
    assert gauge("drift_p", reward="rm") == pytest.approx(rm.drift.p)
    assert gauge("agreement_spearman", reward_a="judge", reward_b="rm") == pytest.approx(1.0)
    assert ("rewardq_health_drift", (("reward", "judge"), ("run", "h"))) not in got  # no earlier judge steps
    assert ("rewardq_health_length_spearman", (("reward", "rm"), ("run", "h"))) not in got  # no length stored
    assert not any(dict(labels).get("run") == "no-such-run" for _, labels in got)
