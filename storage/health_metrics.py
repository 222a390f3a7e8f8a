"""The reward-health signals of each watched run's last step as Prometheus gauges: :class:`HealthCollector`,
a prometheus-client custom collector for an exporter to register (it reads the audit store on each scrape).

A scrape reads only the last step and the ``window`` steps before it (the drift test's reference here,
:class:`rewardq.storage.signals.DriftTest`), so its cost does not grow with the run's length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from rewardq.storage.health import RunHealth, run_health
from rewardq.storage.models import scores_table
from rewardq.storage.signals import P_BELOW, DriftTest

_c = scores_table.c

WINDOW = 20
"""Steps before the last that the metrics' drift test pools as its reference."""

_RUN = ["run"]
_REWARD = ["run", "reward"]
_GAUGES: dict[str, tuple[str, list[str]]] = {
    "step": (
        "The last step of the run in the audit store (the step the other rewardq_health_* are of).",
        _RUN,
    ),
    "scores": ("Scores of the reward at the run's last step, by status.", [*_REWARD, "status"]),
    "value_mean": ("Mean of the reward's ok values at the last step.", _REWARD),
    "value_std": ("Population standard deviation of the reward's ok values at the last step.", _REWARD),
    "value_p10": ("10th percentile of the reward's ok values at the last step.", _REWARD),
    "value_p90": ("90th percentile of the reward's ok values at the last step.", _REWARD),
    "length_spearman": (
        "Spearman correlation of the reward with completion length at the last step (length hacking).",
        _REWARD,
    ),
    "agreement_spearman": (
        "Spearman correlation of two rewards on the samples both scored ok at the last step.",
        ["run", "reward_a", "reward_b"],
    ),
    "drift": (
        "1 when the two-sample Kolmogorov-Smirnov test of the last step against the steps before flags it.",
        _REWARD,
    ),
    "drift_ks": ("The drift test's KS statistic at the last step.", _REWARD),
    "drift_p": ("The drift test's p-value at the last step.", _REWARD),
}


class HealthCollector(Collector):
    """Gauges ``rewardq_health_*`` of each run in ``runs`` at its last step; a run with no step yet
    yields nothing. ``engine`` is the audit store's (:func:`rewardq.storage.make_engine`)."""

    def __init__(
        self, engine: Engine, runs: Iterable[str], *, window: int = WINDOW, p_below: float = P_BELOW
    ) -> None:
        self.engine = engine
        self.runs = list(runs)
        self.test = DriftTest(p_below=p_below, window=window)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without samples, so that registering reads nothing."""
        yield from self._families().values()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        with self.engine.connect() as conn:
            for run in self.runs:
                last = conn.scalar(select(func.max(_c.step)).where(_c.run_id == run))
                if last is None:
                    continue
                first = last - (self.test.window or 0)
                health = run_health(conn, run, step_min=first, step_max=last, test=self.test)
                _add(families, health, last)
        yield from families.values()

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        return {
            name: GaugeMetricFamily(f"rewardq_health_{name}", text, labels=labels)
            for name, (text, labels) in _GAUGES.items()
        }


def _add(families: dict[str, GaugeMetricFamily], health: RunHealth, last: int) -> None:
    run = health.run_id
    families["step"].add_metric([run], last)

    def put(name: str, labels: Sequence[str], value: float | None) -> None:
        if value is not None:
            families[name].add_metric([run, *labels], value)

    for s in health.steps:
        if s.step != last:
            continue
        for status, count in s.statuses.items():
            put("scores", [s.reward, status], count)
        put("value_mean", [s.reward], s.mean)
        put("value_std", [s.reward], s.std)
        put("value_p10", [s.reward], s.p10)
        put("value_p90", [s.reward], s.p90)
        put("length_spearman", [s.reward], s.length_spearman)
        if s.drift is not None:
            put("drift", [s.reward], float(s.drift.flagged))
            put("drift_ks", [s.reward], s.drift.ks)
            put("drift_p", [s.reward], s.drift.p)
    for a in health.agreements:
        if a.step == last:
            put("agreement_spearman", [a.reward_a, a.reward_b], a.spearman)
