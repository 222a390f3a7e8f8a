"""``rewardq status --metrics-port P``: the broker's figures as Prometheus metrics, from one place.

Queue depths per reward and priority, live workers and the tasks in flight and parked are the broker's,
not any worker's: one exporter reads them from Redis at each scrape (what ``rewardq status`` reads,
:func:`~rewardq.workers.cli.status.read_status`), instead of every worker reporting the same numbers.
A scrape while the broker is away answers ``rewardq_broker_up 0`` and nothing else. With ``--health-run``,
the exporter also serves those runs' reward-health signals at their last step, read from the audit store
(:class:`~rewardq.storage.health_metrics.HealthCollector`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from rewardq.wire.errors import BrokerUnavailable, SettingsError
from rewardq.wire.settings import Settings
from rewardq.workers.cli.status import read_status

log = logging.getLogger(__name__)


class BrokerCollector:
    """A prometheus-client collector that reads the broker's status at each scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("rewardq_broker_up", "1 when the broker answered this scrape.")
        try:
            report = read_status(self.settings)
        except BrokerUnavailable as e:
            log.warning("%s", e)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "rewardq_queue_depth", "Tasks waiting in a reward's queue.", labels=["reward", "priority"]
        )
        for queue in report.queues:
            for priority, n in queue.by_priority.items():
                depth.add_metric([queue.reward, str(priority)], n)
        yield depth
        live = GaugeMetricFamily("rewardq_workers_live", "Live workers (announced, beating).")
        live.add_metric([], len(report.workers))
        yield live
        serving = GaugeMetricFamily(
            "rewardq_reward_workers", "Live workers serving a reward.", labels=["reward"]
        )
        for reward in sorted({r for w in report.workers for r in w.rewards}):
            serving.add_metric([reward], sum(reward in w.rewards for w in report.workers))
        yield serving
        held = GaugeMetricFamily(
            "rewardq_tasks_in_flight", "Tasks taken by workers and not yet acknowledged."
        )
        held.add_metric([], report.in_flight)
        yield held
        parked = GaugeMetricFamily("rewardq_tasks_parked", "Entries in the dead-letter queue.")
        parked.add_metric([], report.parked)
        yield parked


def serve(
    settings: Settings,
    port: int,
    addr: str = "0.0.0.0",  # scraped from other hosts
    *,
    health_runs: Sequence[str] = (),
) -> None:
    """Serve the broker's metrics (and ``health_runs``' health) on ``port`` until the process is stopped."""
    from prometheus_client import CollectorRegistry, start_http_server

    read_status(settings)  # a wrong URL or an absent broker: say so now, not at the first scrape
    registry = CollectorRegistry()
    registry.register(BrokerCollector(settings))
    if health_runs:
        from rewardq.storage import make_engine
        from rewardq.storage.health_metrics import HealthCollector

        registry.register(HealthCollector(make_engine(settings.database_url), health_runs))
    try:
        start_http_server(port, addr=addr, registry=registry)
    except OSError as e:
        raise SettingsError(f"--metrics-port {port}: cannot serve the metrics there: {e}") from e
    print(f"serving the broker's metrics on http://{addr}:{port}/metrics", flush=True)
    threading.Event().wait()
