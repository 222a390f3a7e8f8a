"""When a failed HTTP attempt is tried again, and after how long: the ``openai`` client's policy, kept as is
when the judges' hot path left that client for a bare HTTP client (issue 19).

- Connection errors and timeouts are retried; so are 408, 409, 429 and 5xx; another status is not.
  A server's ``x-should-retry: true|false`` overrides the status.
- The wait is the server's ``retry-after-ms`` or ``Retry-After`` (seconds, or an HTTP date) when it asks
  for more than 0 s and at most two minutes; a status error that asks for longer is not retried.
- Otherwise exponential backoff: 0.5 s * 2^retry, at most 8 s, less a random 0 to 25 %.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping

INITIAL_DELAY = 0.5
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 120.0
RETRIED_STATUSES = frozenset({408, 409, 429})
RETRY_COUNT_HEADER = "x-stainless-retry-count"
"""The openai client's count of retries before an attempt: sent with every attempt, as that client did, so a
server's logs (and tests/fake_openai.py) tell the attempts of one request apart."""

_INFINITY = ("inf", "+inf", "infinity", "+infinity")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds a response asks the client to wait (``retry-after-ms``, then ``Retry-After``), or None."""
    for header, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if delay == math.inf and value.strip().lower() not in _INFINITY:
            return MAX_RETRY_AFTER + 1  # a numeric overflow is an excessive delay, not a malformed one
        return delay / divisor
    try:
        date = email.utils.parsedate_tz(headers.get("retry-after", ""))
        if date is None:
            return None
        return float(email.utils.mktime_tz(date) - time.time())
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an error status is worth another attempt."""
    asked = retry_after(headers)
    if asked is not None and math.isfinite(asked) and asked > MAX_RETRY_AFTER:
        return False
    override = headers.get("x-should-retry")
    if override in ("true", "false"):
        return override == "true"
    return status in RETRIED_STATUSES or status >= 500


def delay(retries: int, headers: Mapping[str, str] | None) -> float:
    """Seconds to wait before retry ``retries + 1``; ``headers`` are those of the failed response, if any."""
    asked = retry_after(headers) if headers is not None else None
    if asked is not None and math.isfinite(asked) and 0 < asked <= MAX_RETRY_AFTER:
        return asked
    backoff = min(INITIAL_DELAY * 2.0 ** min(retries, 1000), MAX_DELAY)
    return max(backoff * (1 - 0.25 * random.random()), 0.0)
