"""The workers' Redis transport: kombu's, except that a channel whose connection was already closed
fails with a connection error instead of an AttributeError.

When Redis restarts under load, Celery's consumer closes the lost connection (``Connection.collect``
detaches the transport from it: ``transport.client = None``), while a channel of that connection still
holds unacknowledged deliveries, for example one whose ack failed ("Couldn't ack"). Closing or recovering
that channel later runs ``QoS.restore_unacked``, which needs a new connection pool, and kombu builds it
from ``self.connection.client.hostname``: ``AttributeError: 'NoneType' object has no attribute
'hostname'``. Celery only recovers from connection errors, so the worker stopped with "Unrecoverable
error". Raised as a connection error, it is one more error of a lost connection: Celery reconnects, and
the deliveries, still in kombu's ``unacked`` hash, come back after the visibility timeout.

Workers select it with Celery's ``broker_transport`` setting (rewardq.workers.runtime.app), by an alias
registered with kombu that keeps the URL's scheme readable in logs: ``rewardq-redis://…`` for a
``redis://`` broker, ``rewardq-rediss://…`` for ``rediss://`` (TLS comes from ``broker_use_ssl``, as
before). Producers keep kombu's transport.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

TRANSPORT = "rewardq.workers.runtime.transport:Transport"
# The broker URL schemes this transport serves, and the alias each is served under.
ALIASES = {"redis": "rewardq-redis", "rediss": "rewardq-rediss"}


class Channel(kombu_redis.Channel):
    """kombu's Redis channel; a channel whose connection was closed raises a connection error."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was closed; reconnecting")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


def worker_transport(broker_url: str) -> str | None:
    """The alias (registered with kombu) of :class:`Transport` for ``broker_url``, or None for a broker
    it does not serve (the embedded worker's ``memory://``)."""
    alias = ALIASES.get(broker_url.partition("://")[0].lower())
    if alias is not None:
        TRANSPORT_ALIASES.setdefault(alias, TRANSPORT)
    return alias
