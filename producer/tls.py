"""TLS for Redis (``rediss://`` URLs): the options every Redis client of rewardq is built with, from the
REWARDQ_REDIS_CA_CERTS / REDIS_CERTFILE / REDIS_KEYFILE settings. The server's certificate is always
verified (``ssl_cert_reqs=required``); an unverified connection is not offered."""

from __future__ import annotations

import ssl
from typing import Any

from rewardq.wire.settings import Settings

TLS_SCHEME = "rediss://"


def uses_tls(url: str | None) -> bool:
    """True for a ``rediss://`` URL."""
    return bool(url) and str(url).startswith(TLS_SCHEME)


def redis_ssl_options(settings: Settings) -> dict[str, Any]:
    """``ssl_*`` keyword arguments for redis-py (also Celery's ``broker_use_ssl`` and
    ``redis_backend_use_ssl``): verify the server against the CA file (the system's when unset) and
    present a client certificate when one is configured."""
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    for key, value in (
        ("ssl_ca_certs", settings.redis_ca_certs),
        ("ssl_certfile", settings.redis_certfile),
        ("ssl_keyfile", settings.redis_keyfile),
    ):
        if value is not None:
            options[key] = str(value)
    return options
