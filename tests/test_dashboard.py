"""The metrics' table (docs/metrics.md) and the Grafana dashboard name exactly what rewardq exports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rewardq import Settings
from rewardq.wire.announcement import Announcement
from rewardq.workers.cli import exporter
from rewardq.workers.cli.status import BrokerStatus, QueueDepth

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "docs" / "grafana" / "rewardq.json"
HISTOGRAM_SERIES = re.compile(r"_(bucket|sum|count)$")

LIST_WORKER_METRICS = """
from prometheus_client import REGISTRY
from rewardq.workers.process.metrics import WorkerMetrics
WorkerMetrics()
for family in REGISTRY.collect():
    if family.name.startswith("rewardq_"):
        print(family.name + ("_total" if family.type == "counter" else ""))
"""


def dashboard_queries() -> list[tuple[str, str]]:
    """Each query of the dashboard, with its panel's title."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", []) if t.get("expr")]


def metric_names(text: str) -> set[str]:
    """The rewardq metrics ``text`` names (a query, or series names), a histogram's series by their
    metric's name."""
    return {HISTOGRAM_SERIES.sub("", name) for name in re.findall(r"rewardq_\w+", text)}


def worker_metrics() -> set[str]:
    """The worker's metric names (counters with their ``_total``), from a fresh process's registry."""
    done = subprocess.run(
        [sys.executable, "-c", LIST_WORKER_METRICS], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split())


def broker_metrics(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The exporter's metric names, collected from a broker status with a queue and a worker."""
    worker = Announcement.model_construct(rewards=["format"])
    status = BrokerStatus(
        "redis://x", [worker], [QueueDepth("rewards.format", "format", 1, {0: 1, 9: 0})], 0, 0
    )
    monkeypatch.setattr(exporter, "read_status", lambda settings: status)
    return {family.name for family in exporter.BrokerCollector(Settings.from_env({})).collect()}


def test_the_docs_table_names_every_metric_and_only_those(monkeypatch: pytest.MonkeyPatch) -> None:
    documented = set(re.findall(r"^\| `(rewardq_\w+)` \|", (ROOT / "docs/metrics.md").read_text(), re.M))
    assert documented == worker_metrics() | broker_metrics(monkeypatch)


def test_the_dashboard_shows_every_exported_metric_and_only_those(monkeypatch: pytest.MonkeyPatch) -> None:
    queried = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    exported = worker_metrics() | broker_metrics(monkeypatch)
    assert queried == exported
