"""The workers' Redis transport: kombu's, except that a channel whose connection was already closed
fails with a connection error instead of an AttributeError, and that an item of a queue's list that is
not a kombu message is parked in the dead-letter queue instead of stopping the worker.

When Redis restarts under load, Celery's consumer closes the lost connection (``Connection.collect``
detaches the transport from it: ``transport.client = None``), while a channel of that connection still
holds unacknowledged deliveries, for example one whose ack failed ("Couldn't ack"). Closing or recovering
that channel later runs ``QoS.restore_unacked``, which needs a new connection pool, and kombu builds it
from ``self.connection.client.hostname``: ``AttributeError: 'NoneType' object has no attribute
'hostname'``. Celery only recovers from connection errors, so the worker stopped with "Unrecoverable
error". Raised as a connection error, it is one more error of a lost connection: Celery reconnects, and
the deliveries, still in kombu's ``unacked`` hash, come back after the visibility timeout.

kombu's channel pops an item off the queue's list (``BRPOP``), parses it as JSON and builds its
message; an item that is not JSON, or a JSON envelope without a message's fields, raised there, out of
the worker's event loop: the worker stopped, or the item (already popped, not yet in ``unacked``) was
dropped with no record. Here the item is parsed and its message built before it is delivered; one that
fails is parked as raw bytes (``rewardq dlq list``), with one line logged, and the worker goes on.

Workers select it with Celery's ``broker_transport`` setting (rewardq.workers.runtime.app), by an alias
registered with kombu that keeps the URL's scheme readable in logs: ``rewardq-redis://…`` for a
``redis://`` broker, ``rewardq-rediss://…`` for ``rediss://`` (TLS comes from ``broker_use_ssl``, as
before), ``rewardq-sentinel://…`` for a Redis behind Sentinel (:class:`SentinelTransport`: the same
channel on kombu's Sentinel channel, which asks the sentinels for the master each time it connects).
Producers keep kombu's transport.
"""

from __future__ import annotations

import logging
from queue import Empty
from typing import Any

from kombu.exceptions import KombuError
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from redis.exceptions import ConnectionError as RedisConnectionError

from rewardq.workers.runtime.dlq import REASON_LIMIT, DeadLetters, raw_letter

log = logging.getLogger(__name__)

TRANSPORT = "rewardq.workers.runtime.transport:Transport"
SENTINEL_TRANSPORT = "rewardq.workers.runtime.transport:SentinelTransport"
# The broker URL schemes these transports serve: the alias each is served under, and its class.
ALIASES = {
    "redis": ("rewardq-redis", TRANSPORT),
    "rediss": ("rewardq-rediss", TRANSPORT),
    "sentinel": ("rewardq-sentinel", SENTINEL_TRANSPORT),
}


class Channel(kombu_redis.Channel):
    """kombu's Redis channel; a channel whose connection was closed raises a connection error, and an
    item of a queue that is not a message is parked."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was closed; reconnecting")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params

    def _brpop_read(self, **options: Any) -> bool:
        # kombu's (5.x), with the item delivered through _deliver_item instead of ``loads`` inline.
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # if there's a ConnectionError, disconnect so the next iteration reconnects
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self._deliver_item(item, dest)
            return True
        finally:
            self._in_poll = False  # kombu writes None here; both mean "no BRPOP in flight"
            self._flush_brpop_reauth()

    def _deliver_item(self, item: bytes, queue: str) -> None:
        """Deliver one item popped off ``queue``'s list, or park it raw if it is no kombu message."""
        try:
            envelope = loads(bytes_to_str(item))
            message = self.Message(envelope, channel=self)  # what the consumer's callback builds
            info = message.delivery_info
            # what QoS.append stores in ``unacked`` (kombu keys it by the tag, restores by these)
            if not isinstance(info.get("exchange"), str) or not isinstance(info.get("routing_key"), str):
                raise KombuError("delivery_info has no exchange and routing_key")
            if not isinstance(message.delivery_tag, str):
                raise KombuError(f"delivery_tag is {type(message.delivery_tag).__name__}, not a string")
        except Exception as e:
            reason = " ".join(f"not a kombu message: {type(e).__name__}: {e}".split())[:REASON_LIMIT]
            try:
                with self.conn_or_acquire() as client:
                    kept = DeadLetters(client).park_new(raw_letter(item, reason, queue))
            except Exception as failed:  # already off the list: it cannot be put back either
                log.error(
                    "queue %s: %s (%d bytes), lost: parking it failed: %r", queue, reason, len(item), failed
                )
                if isinstance(failed, self.connection_errors):
                    raise  # Celery reconnects
                return
            log.error("queue %s: %s (%d bytes), parked raw as %s", queue, reason, len(item), kept)
            return
        self.connection._deliver(envelope, queue)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """:class:`Channel` on kombu's Sentinel channel (its connection pool follows the master)."""


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel


def worker_transport(broker_url: str) -> str | None:
    """The alias (registered with kombu) of :class:`Transport` for ``broker_url``, or None for a broker
    it does not serve (the embedded worker's ``memory://``)."""
    served = ALIASES.get(broker_url.partition("://")[0].lower())
    if served is None:
        return None
    alias, transport = served
    TRANSPORT_ALIASES.setdefault(alias, transport)
    return alias
