"""Checking, once and fast, that the broker and the result backend answer, so that an unreachable Redis
or a wrong password is one clear error at the first submit, not a timeout (or Celery's "result store
… must be restarted") many seconds later. URLs in messages have their password masked."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.utils.url import maybe_sanitize_url

from rewardq.errors import BrokerUnavailable

CONNECT_TIMEOUT_S = 5.0


def masked(url: str | None) -> str:
    """``url`` with its password replaced by ``**`` (as Celery prints URLs)."""
    return str(maybe_sanitize_url(url or ""))


def check_connection(app: Celery, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to ``app``'s broker and ping its result backend; raise BrokerUnavailable naming which
    one failed and why (connection refused, authentication failed …)."""
    broker = app.conf.broker_url
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as e:
        raise BrokerUnavailable(f"cannot connect to the broker {masked(broker)}: {_cause(e)}") from e
    backend: Any = app.backend
    client = getattr(backend, "client", None)
    if client is None or not hasattr(client, "ping"):
        return  # not a Redis backend: nothing cheap to check
    try:
        client.ping()
    except Exception as e:
        raise BrokerUnavailable(
            f"cannot connect to the result backend {masked(app.conf.result_backend)}: {_cause(e)}"
        ) from e


def _cause(exc: BaseException) -> str:
    """The innermost cause's text (kombu wraps redis-py's)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
