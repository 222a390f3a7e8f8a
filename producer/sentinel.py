"""Redis behind Sentinel: the one place that turns a ``sentinel://`` URL and the REWARDQ_SENTINEL_*
settings into what each kind of client needs, so that producers, workers and the result backend all
follow the master when Sentinel promotes a replica.

A Sentinel URL lists the sentinels, as Celery and kombu take it:
``sentinel://:password@host1:26379/0;sentinel://host2:26379;sentinel://host3:26379``. The password and
database of the first entry are the Redis master's; the master's name (REWARDQ_SENTINEL_MASTER) and the
sentinels' own password (REWARDQ_SENTINEL_PASSWORD) are settings. With REWARDQ_SENTINEL_TLS both the
sentinels and the master are reached over TLS, with the REWARDQ_REDIS_* certificates (rewardq.tls).

- Celery's broker (kombu's ``SentinelChannel``) and result backend (Celery's ``SentinelBackend``) read
  ``master_name`` and ``sentinel_kwargs`` from their transport options: :func:`sentinel_transport_options`.
- Plain redis-py clients (announcements, stored samples, the judges' cache …) are built by
  :func:`master_client`: ``redis.sentinel.Sentinel(...).master_for(name)``, whose connections ask the
  sentinels for the master's address each time they (re)connect.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from rewardq.tls import redis_ssl_options, uses_tls
from rewardq.wire.errors import SettingsError
from rewardq.wire.settings import SENTINEL_SCHEME, Settings

DEFAULT_PORT = 26379
SEPARATOR = ";"


def uses_sentinel(url: str | None) -> bool:
    """True for a ``sentinel://`` URL."""
    return bool(url) and str(url).startswith(SENTINEL_SCHEME)


def tls_options(settings: Settings, url: str | None) -> dict[str, Any]:
    """The ``ssl_*`` options a Redis client of ``url`` is built with: always for ``rediss://``, for
    ``sentinel://`` when REWARDQ_SENTINEL_TLS is set, else none."""
    if uses_tls(url) or (uses_sentinel(url) and settings.sentinel_tls):
        return redis_ssl_options(settings)
    return {}


def sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    """How to reach the sentinels themselves: their password and TLS (redis-py's ``sentinel_kwargs``)."""
    options: dict[str, Any] = {}
    if settings.sentinel_password:
        options["password"] = settings.sentinel_password
    if settings.sentinel_tls:
        options |= {"ssl": True, **redis_ssl_options(settings)}
    return options


def sentinel_transport_options(settings: Settings, url: str | None) -> dict[str, Any]:
    """The Sentinel part of Celery's ``broker_transport_options`` or ``result_backend_transport_options``
    for ``url`` (nothing for another scheme)."""
    if not uses_sentinel(url):
        return {}
    return {"master_name": settings.sentinel_master, "sentinel_kwargs": sentinel_kwargs(settings)}


def sentinels(url: str) -> list[tuple[str, int]]:
    """The (host, port) of each sentinel a ``sentinel://`` URL lists."""
    found = []
    for entry in url.split(SEPARATOR):
        parts = urlsplit(entry.strip())
        found.append((parts.hostname or "localhost", parts.port or DEFAULT_PORT))
    return found


def master_options(url: str) -> dict[str, Any]:
    """The Redis master's database, user and password, from the URL's first entry."""
    parts = urlsplit(url.split(SEPARATOR)[0].strip())
    options: dict[str, Any] = {"db": int(parts.path.strip("/") or 0)}
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    return options


def master_client(settings: Settings, url: str, **options: Any) -> Any:
    """A redis-py client of the master that the sentinels of ``url`` name REWARDQ_SENTINEL_MASTER;
    ``options`` (timeouts, retries) apply to its connections."""
    from redis import Redis
    from redis.sentinel import Sentinel

    if not settings.sentinel_master:  # Settings refuse a Sentinel URL without it; another URL may come here
        raise SettingsError("a sentinel:// Redis URL needs REWARDQ_SENTINEL_MASTER")
    tls = tls_options(settings, url)
    if tls:
        tls["ssl"] = True
    sentinel = Sentinel(sentinels(url), sentinel_kwargs=sentinel_kwargs(settings), **tls)
    return sentinel.master_for(settings.sentinel_master, redis_class=Redis, **master_options(url), **options)
