"""Serving a worker's metrics (``rewardq worker --metrics-port P``): prometheus-client's multiprocess mode,
so that one scrape of the worker's main process adds up every pool process.

:func:`expose` runs at the worker's start, before prometheus-client is imported and before the pool
forks: it points ``PROMETHEUS_MULTIPROC_DIR`` at a directory (the one set in the environment, else a new
temporary one, removed when the worker exits), empties it of an earlier run's files, turns the metrics on
(:mod:`rewardq.workers.process.metrics`) and serves them over HTTP. A pool process that ends marks its
live gauges dead (``mark_process_dead``: its tasks running); one killed before it could is found at the
next scrape, its pid gone, and marked then. Tasks running and their queue wait are taken when a task starts
(Celery's ``task_prerun``), the wait from the producer's ``SENT_AT_HEADER``.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celery import signals

from rewardq.wire.errors import SettingsError
from rewardq.wire.schema import SENT_AT_HEADER
from rewardq.workers.process import metrics

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def multiproc_dir() -> Path:
    """The directory of the metrics' files, emptied: ``PROMETHEUS_MULTIPROC_DIR``, or a new one (set), which
    this process removes when it exits."""
    given = os.environ.get(MULTIPROC_ENV)
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="rewardq-metrics-"))
    if not given:
        atexit.register(_remove, path, os.getpid())
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def _remove(path: Path, owner: int) -> None:
    if os.getpid() == owner:  # not a forked pool process that happens to run its exit handlers
        shutil.rmtree(path, ignore_errors=True)


def expose(port: int, addr: str = "0.0.0.0") -> None:  # scraped from other hosts
    """Turn this worker's metrics on and serve them on ``port``; call before the pool forks."""
    path = multiproc_dir()
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    metrics.enable()
    registry = CollectorRegistry()
    registry.register(_Sweeping(path))
    MultiProcessCollector(registry, path=str(path))
    try:
        start_http_server(port, addr=addr, registry=registry)
    except OSError as e:
        raise SettingsError(f"--metrics-port {port}: cannot serve the metrics there: {e}") from e
    signals.task_prerun.connect(_task_prerun, weak=False)
    signals.task_postrun.connect(_task_postrun, weak=False)
    signals.worker_process_shutdown.connect(_process_ended, weak=False)
    log.info("metrics on http://%s:%d/metrics (files in %s)", addr, port, path)


class _Sweeping:
    """A collector of nothing, registered first: at each scrape it marks dead the live gauges of pool
    processes that ended without doing so (killed)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import mark_process_dead

        for file in self.path.glob("gauge_live*.db"):
            match = _LIVE_FILE.fullmatch(file.name)
            if match and not _alive(pid := int(match.group(1))):
                mark_process_dead(pid, str(self.path))
        yield from ()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_ended(pid: int | None = None, **_: object) -> None:
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid or os.getpid())


def _task_postrun(**_: object) -> None:
    metrics.task_running(-1)


def _task_prerun(task: Any = None, args: Any = None, **_: object) -> None:
    """A task running, and its queue wait; of each task of a coalesced flush (its requests)."""
    metrics.task_running(1)
    now = time.time()
    first = args[0] if args else None
    if isinstance(first, dict):
        metrics.task_started(first.get("reward"), task.request.get(SENT_AT_HEADER), now)
    elif isinstance(first, list):
        for request in first:
            payload = request.args[0] if getattr(request, "args", None) else None
            headers = getattr(request, "request_dict", None) or {}
            if isinstance(payload, dict):
                metrics.task_started(payload.get("reward"), headers.get(SENT_AT_HEADER), now)
