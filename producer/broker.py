"""The Celery connection settings shared by producers and workers: broker, result backend, JSON only."""

from __future__ import annotations

from typing import Any

from celery import Celery

from rewardq.sentinel import sentinel_transport_options, tls_options
from rewardq.wire.keys import PRIORITY_STEPS
from rewardq.wire.settings import Settings

# The in-memory transport and cache backend poll; a 1 ms interval keeps embedded round trips sub-ms.
EMBEDDED_BROKER = "memory://localhost/"
EMBEDDED_BACKEND = "cache+memory://"
EMBEDDED_POLL_S = 0.001

# A producer whose broker restarts retries each publish for about this long (one try a second) before
# it fails with BrokerUnavailable (rewardq.connection.publish_failed).
PUBLISH_RETRY_S = 30.0
PUBLISH_RETRY_POLICY = {
    "max_retries": int(PUBLISH_RETRY_S),
    "interval_start": 0,
    "interval_step": 1,
    "interval_max": 1,
}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Configuration both ends agree on. Workers add their own on top (see rewardq.workers.runtime.app)."""
    transport_options: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout,
        "priority_steps": PRIORITY_STEPS,
        # Each heartbeat, every live worker restores the tasks of a worker that stopped beating
        # (rewardq.workers.runtime.heartbeat) for longer than the visibility timeout.
        "unacked_restore_interval": settings.heartbeat,
        "unacked_restore_throttle": 1,
    } | sentinel_transport_options(settings, settings.broker_url)
    if settings.embedded:
        transport_options["polling_interval"] = EMBEDDED_POLL_S
    tls: dict[str, Any] = {}
    if broker_tls := tls_options(settings, settings.broker_url):
        tls["broker_use_ssl"] = broker_tls
    if backend_tls := tls_options(settings, settings.backend_url):
        tls["redis_backend_use_ssl"] = backend_tls
    return tls | {
        "broker_url": settings.broker_url or EMBEDDED_BROKER,
        "result_backend": settings.backend_url or EMBEDDED_BACKEND,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "result_expires": settings.result_expires,
        "broker_transport_options": transport_options,
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout}
        | sentinel_transport_options(settings, settings.backend_url),
        "broker_connection_retry_on_startup": True,
        "task_create_missing_queues": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        "enable_utc": True,
    }


def results_on_broker(app: Celery) -> bool:
    """True when ``app``'s result backend is its broker's Redis: keys of both go in one round trip."""
    return bool(app.conf.result_backend == app.conf.broker_url)


def make_app(settings: Settings, name: str = "rewardq") -> Celery:
    """A Celery app that can send tasks by name and read their results; it registers no tasks."""
    app = Celery(name, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


# How long a gathering client sleeps between polls of a result backend. The embedded cache backend is
# polled throughout; the Redis backend is polled once (this long) before it waits on pub/sub, so a
# large value there is added to every round trip (Celery's default of 0.5 s would be).
GATHER_POLL_S = 0.001
