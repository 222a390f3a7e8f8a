"""Secrets rewardq knows of, and masking them in what it prints: the audit key and the passwords in
the configured URLs (broker, result backend, audit database, cache), and passwords in URLs found in a
reward's options."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from rewardq.connection import MASK, masked
from rewardq.wire.settings import ENV_PREFIX

# Settings whose values are secrets, or URLs that may carry one.
SECRET_SETTINGS = ("AUDIT_KEY",)
URL_SETTINGS = ("BROKER_URL", "RESULT_BACKEND", "DATABASE_URL", "CACHE_URL")


def url_password(url: str) -> str | None:
    """The password in a URL (``scheme://user:password@host``), or None."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def known_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """The secrets configured in the environment: the audit key and the URLs' passwords."""
    env = os.environ if environ is None else environ
    found = [env.get(ENV_PREFIX + name, "") for name in SECRET_SETTINGS]
    found += [url_password(env.get(ENV_PREFIX + name, "")) or "" for name in URL_SETTINGS]
    return [s for s in found if len(s) >= 3]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret (and its URL-quoted form) replaced by ``**``."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, MASK).replace(quote(secret, safe=""), MASK)
    return text


def masked_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A reward's options with the password of any URL in them (``base_url = "https://u:p@host"``)
    masked."""
    return {key: _masked_value(value) for key, value in options.items()}


def _masked_value(value: Any) -> Any:
    if isinstance(value, str):
        return masked(value)
    if isinstance(value, Mapping):
        return masked_options(value)
    if isinstance(value, list | tuple):
        return [_masked_value(v) for v in value]
    return value
