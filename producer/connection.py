"""Checking, once and fast, that the broker and the result backend answer, so that an unreachable Redis
or a wrong password is one clear error at the first submit, not a timeout (or Celery's "result store
… must be restarted") many seconds later. URLs in messages have their password masked (:func:`masked`,
the one URL-masking helper: the CLI and the workers use it too)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from celery import Celery

from rewardq.broker import PUBLISH_RETRY_S
from rewardq.sentinel import SEPARATOR
from rewardq.wire.errors import BrokerLost, BrokerUnavailable

CONNECT_TIMEOUT_S = 5.0
MASK = "**"


def masked(url: str | None) -> str:
    """``url`` with its password replaced by ``**`` (``redis://user:**@host:6379/0``, as Celery prints
    URLs), the rest as given; text that is no URL with a password comes back unchanged. Each URL of a
    Sentinel list (``sentinel://…;sentinel://…``) is masked."""
    if not url:
        return ""
    if SEPARATOR in url:
        return SEPARATOR.join(masked(part) for part in url.split(SEPARATOR))
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparsable: keep the scheme only, the rest may hold a password
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://{MASK}" if sep else MASK
    if not password:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}:{MASK}@{host}"))


def check_connection(app: Celery, timeout: float = CONNECT_TIMEOUT_S, *, refusals_only: bool = False) -> None:
    """Connect to ``app``'s broker and ping its result backend; raise BrokerUnavailable naming which
    one failed and why (connection refused, authentication failed …).

    ``refusals_only``: raise only when a server answered and refused (wrong credentials, an untrusted
    certificate), which retrying cannot fix; a server that is down is left to Celery's retries.
    """
    broker = app.conf.broker_url
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as e:
        if refusals_only and not _refused(e):
            return
        raise BrokerUnavailable(f"cannot connect to the broker {masked(broker)}: {_cause(e)}") from e
    backend: Any = app.backend
    client = getattr(backend, "client", None)
    if client is None or not hasattr(client, "ping"):
        return  # not a Redis backend: nothing cheap to check
    try:
        client.ping()
    except Exception as e:
        if refusals_only and not _refused(e):
            return
        raise BrokerUnavailable(
            f"cannot connect to the result backend {masked(app.conf.result_backend)}: {_cause(e)}"
        ) from e


def publish_failed(app: Celery, exc: BaseException) -> BrokerLost | None:
    """The one-line error for a task that could not be sent while Redis stayed down, or None when
    ``exc`` is something else: the broker outlasted Celery's publish retries (``task_publish_retry_policy``:
    about 30 s, enough for a restart), or the result backend the client subscribes through outlasted
    its reconnects (Celery's RuntimeError "… must be restarted")."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, OperationalError):
        lost = isinstance(_innermost(exc), RedisConnectionError | RedisTimeoutError | OSError)
        retried = f" (retried for {PUBLISH_RETRY_S:.0f} s)" if lost else ""  # a full Redis is not retried
        return BrokerLost(
            f"cannot publish to the broker {masked(app.conf.broker_url)}{retried}: {_cause(exc)}"
        )
    if isinstance(exc, RuntimeError) and isinstance(exc.__cause__, RedisConnectionError | OSError):
        return BrokerLost(
            f"cannot reach the result backend {masked(app.conf.result_backend)} (retried): {_cause(exc)}"
        )
    return None


def _refused(exc: BaseException) -> bool:
    """True when the server refused the credentials or its certificate was not trusted."""
    import ssl

    from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError, ResponseError

    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, AuthenticationError | AuthenticationWrongNumberOfArgsError | ssl.SSLError):
        return True
    text = str(exc)
    if isinstance(exc, ResponseError) and ("NOAUTH" in text or "WRONGPASS" in text):
        return True
    return "SSL" in text


def _innermost(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _cause(exc: BaseException) -> str:
    """The innermost cause's text (kombu wraps redis-py's)."""
    exc = _innermost(exc)
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
