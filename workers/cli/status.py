"""``rewardq status``: the live workers (from their announcements), the depth of each reward queue, the
tasks in flight and the parked tasks, read from the broker's Redis. URLs are shown with their password
masked."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer

from rewardq.connection import masked
from rewardq.scorers import short
from rewardq.serving import REDIS_SCHEMES, read_announcements, redis_client
from rewardq.wire.announcement import Announcement
from rewardq.wire.errors import BrokerUnavailable, SettingsError
from rewardq.wire.keys import DLQ_KEY, PRIORITY_SEP, PRIORITY_STEPS, UNACKED_KEY, priority_lists
from rewardq.wire.schema import QUEUE_PREFIX
from rewardq.wire.settings import Settings
from rewardq.workers.cli.common import errors, settings
from rewardq.workers.cli.render import Format, render, stdout_console

SOCKET_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    reward: str
    depth: int
    by_priority: dict[int, int]  # priority step → tasks waiting at it


@dataclass(frozen=True)
class BrokerStatus:
    """What ``rewardq status`` reports."""

    broker: str
    workers: list[Announcement]
    queues: list[QueueDepth]
    in_flight: int
    parked: int


def read_status(config: Settings) -> BrokerStatus:
    """Read the announcements, queue lengths, ``unacked`` and ``rewardq:dlq`` from the broker's Redis."""
    url = config.broker_url
    if not url:
        raise SettingsError("rewardq status needs a Redis broker: set REWARDQ_BROKER_URL (redis://…)")
    if not url.startswith(REDIS_SCHEMES):
        scheme, sep, _ = url.partition("://")  # the scheme only: the rest may hold a password
        what = f"the scheme {scheme!r} is not a supported broker" if sep else "it is not a URL"
        raise SettingsError(
            f"REWARDQ_BROKER_URL: {what}; rewardq status reads a Redis broker: {', '.join(REDIS_SCHEMES)}"
        )
    client = redis_client(config, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S)
    try:
        workers = read_announcements(client)
        queues = {q for w in workers for q in w.queues}
        for key in client.scan_iter(match=QUEUE_PREFIX + "*", count=1000):
            queues.add(key.decode(errors="replace").split(PRIORITY_SEP)[0])
        names = sorted(queues)
        pipe = client.pipeline(transaction=False)
        for name in names:
            for key in priority_lists(name):
                pipe.llen(key)
        pipe.hlen(UNACKED_KEY)
        pipe.hlen(DLQ_KEY)
        *lengths, in_flight, parked = pipe.execute()
    except Exception as e:
        raise BrokerUnavailable(f"cannot read the status from the broker {masked(url)}: {e}") from e
    finally:
        client.close()
    steps = len(PRIORITY_STEPS)
    depths = []
    for i, name in enumerate(names):
        by_priority = dict(zip(PRIORITY_STEPS, lengths[i * steps : (i + 1) * steps], strict=True))
        depths.append(
            QueueDepth(name, name.removeprefix(QUEUE_PREFIX), sum(by_priority.values()), by_priority)
        )
    return BrokerStatus(masked(url), workers, depths, int(in_flight), int(parked))


def _worker_row(entry: Announcement, now: float, *, full: bool) -> dict[str, Any]:
    """One worker's row; its scorer fingerprints whole (``full``) or shortened for a table."""
    fingerprints = entry.fingerprints
    return {
        "node": entry.node,
        "host": entry.host,
        "rewards": entry.rewards,
        "fingerprints": fingerprints
        if full
        else ", ".join(f"{r}={short(fingerprints.get(r))}" for r in entry.rewards),
        "gpu": entry.gpu,
        "pool": entry.pool,
        "concurrency": entry.concurrency,
        "held": entry.held,
        "last_beat_s": None if entry.beat_at is None else round(now - entry.beat_at, 1),
    }


@errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of tables.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="Serve these figures as Prometheus metrics on this port, until stopped."
        ),
    ] = None,
    health_run: Annotated[
        list[str] | None,
        typer.Option(
            help="With --metrics-port: also serve this run's reward-health signals at its last step "
            "(rewardq_health_*, from the audit store; repeat for several runs)."
        ),
    ] = None,
) -> None:
    """Live workers (rewards and their scorer fingerprints, GPU, pool, held tasks, last heartbeat), queue
    depths, tasks in flight and parked tasks."""
    if metrics_port is not None:
        from rewardq.workers.cli.exporter import serve

        serve(settings(), metrics_port, health_runs=health_run or ())
        return
    if health_run:
        raise typer.BadParameter("serves health metrics: give --metrics-port too", param_hint="--health-run")
    report = read_status(settings())
    now = time.time()
    workers = [_worker_row(w, now, full=as_json) for w in sorted(report.workers, key=lambda w: w.node)]
    if as_json:
        print(json.dumps(asdict(report) | {"workers": workers}))
        return
    render(workers, Format.table, title=f"live workers ({report.broker})")
    render([asdict(q) for q in report.queues], Format.table, title="queues (tasks waiting)")
    stdout_console().print(
        f"tasks in flight: {report.in_flight}   parked (rewardq dlq list): {report.parked}", highlight=False
    )
