"""The Grafana dashboard's queries (docs/grafana/rewardq.json), evaluated by a real Prometheus (Debian's
``prometheus``, installed by .ci/run) that scrapes a live worker (two rule rewards and a judge behind a
fake OpenAI server) and the ``rewardq status`` exporter through two real batches: every query is valid
PromQL, and every panel whose metrics Prometheus holds
shows finite numbers (a panel whose selectors, groupings or divisions do not line up shows "No data",
or NaN, in Grafana)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rewardq import RewardClient, Settings
from tests.conftest import RedisServer, WorkerProcess, free_port, unavailable
from tests.fake_openai import FakeOpenAI, failing, verdict
from tests.test_dashboard import DASHBOARD, dashboard_queries, metric_names
from tests.workers.test_metrics import _exporter, wait_for, wait_port

pytestmark = pytest.mark.slow

SCRAPE_S = 1
REWARDS = ["format", "repetition", "grader"]


class Prometheus:
    """A Prometheus server on a free port, scraping ``targets`` every SCRAPE_S seconds."""

    def __init__(self, binary: str, home: Path, targets: dict[str, int]) -> None:
        self.port = free_port()
        jobs = [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in targets.items()
        ]
        config = {"global": {"scrape_interval": f"{SCRAPE_S}s"}, "scrape_configs": jobs}
        (home / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = home / "prometheus.log"
        argv = [
            binary,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, "Prometheus ready")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=5) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now; AssertionError naming Prometheus' error."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                answer = json.loads(reply.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{expr}: {e.read().decode()}") from e
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def held(self) -> set[str]:
        """The rewardq metrics Prometheus has series of (a histogram's by its metric's name)."""
        series = {s["metric"]["__name__"] for s in self.query('{__name__=~"rewardq_.+"}')}
        return metric_names(" ".join(series))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        unavailable("no prometheus binary (Debian: apt-get install prometheus)")
    assert binary is not None
    return binary


@pytest.fixture
def rewards_file(tmp_path: Path) -> Iterator[Path]:
    """A rewards file with ``grader``, a judge whose server fails each request once (503) before its
    verdict: a retry each."""
    with FakeOpenAI(failing(1, 503, verdict("[[7]]"), {"retry-after-ms": "10"})) as server:
        rewards = tmp_path / "rewards.toml"
        rewards.write_text(
            f'[rewards.grader]\nkind = "judge"\nbase_url = "{server.base_url}"\nmodel = "{server.model}"\n'
            'template = "Grade: {completion}"\nscore_range = [0, 10]\n'
        )
        yield rewards


@pytest.fixture
def scraped(
    tmp_path: Path,
    prometheus_binary: str,
    redis_server: RedisServer,
    sqlite_url: str,
    rewards_file: Path,
    start_worker: Callable[..., WorkerProcess],
) -> Iterator[Prometheus]:
    """Prometheus scraping a worker of REWARDS and the exporter."""
    worker_port, exporter_port = free_port(), free_port()
    (tmp_path / "prom").mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), "REWARDQ_REWARDS": str(rewards_file)}
    args = ["--rewards", ",".join(REWARDS), "--pool", "prefork", "--concurrency", "2"]
    start_worker(redis_server.url, sqlite_url, *args, "--metrics-port", str(worker_port), env=env)
    exporter = _exporter(redis_server.url, exporter_port)
    prometheus: Prometheus | None = None
    try:
        wait_port(exporter_port, exporter)
        (tmp_path / "prometheus").mkdir()
        prometheus = Prometheus(
            prometheus_binary, tmp_path / "prometheus", {"workers": worker_port, "exporter": exporter_port}
        )
        yield prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        exporter.terminate()
        exporter.wait(timeout=20)


def test_every_panel_shows_numbers_once_a_run_is_scored(
    scraped: Prometheus, redis_server: RedisServer, rewards_file: Path
) -> None:
    settings = Settings.from_env(
        {}, broker_url=redis_server.url, rewards=rewards_file, timeout=120, chunk_size=4
    )
    samples = [{"prompt": "p", "completion": f"<think>{i}</think><answer>{i}</answer>"} for i in range(16)]

    def scraped_all(n: int) -> Callable[[], bool]:
        """Whether Prometheus has scraped ``n`` samples scored in all."""
        query = "sum(rewardq_samples_scored_total)"
        return lambda: [float(s["value"][1]) for s in scraped.query(query)] == [float(n)]

    with RewardClient(settings) as client:
        # Two batches some scrapes apart, so that every counter has risen within the rate windows (the
        # second's verdicts come from the judge's cache).
        for batch in (1, 2):
            result = client.score(samples, REWARDS, run_id="dashboard")
            assert all(s == ["ok"] * 16 for s in result.statuses.values()), result.errors
            wait_for(scraped_all(len(REWARDS) * 16 * batch), f"batch {batch} scraped")
            time.sleep(3 * SCRAPE_S)
    held = scraped.held()
    assert {"rewardq_samples_scored_total", "rewardq_queue_depth", "rewardq_workers_live"} <= held
    empty, not_finite, shown = [], [], []
    for title, expr in dashboard_queries():
        result = scraped.query(expr)  # valid PromQL, or this fails naming Prometheus' error
        if not metric_names(expr) <= held:
            continue  # what this run does not exercise (model coalescing, sandboxes, deadlines, the DLQ)
        values = [float(s["value"][1]) for s in result]
        if not values:
            empty.append(title)
        elif not all(math.isfinite(v) for v in values):
            not_finite.append(f"{title}: {values}")
        else:
            shown.append(title)
    assert not empty and not not_finite, (empty, not_finite)
    assert len(shown) >= 20, shown  # most of the dashboard was exercised, not skipped


def test_the_compose_prometheus_config_is_one_prometheus_accepts(prometheus_binary: str) -> None:
    """docs/grafana/prometheus.yml, what docker-compose.yml gives Prometheus, checked by its promtool."""
    promtool = Path(prometheus_binary).with_name("promtool")
    config = DASHBOARD.with_name("prometheus.yml")
    done = subprocess.run([str(promtool), "check", "config", str(config)], capture_output=True, text=True)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr
