"""The servers a reward talks to: one ``AsyncOpenAI`` client per replica URL, a bound on requests in flight,
load spread over the replicas, and every failure turned into a :class:`Failure` with its reason.

Retries are the openai client's own (``max_retries``, exponential backoff with jitter, ``Retry-After``
honoured up to two minutes): it retries connection errors, timeouts, 408, 409, 429 and 5xx and never
another 4xx. The number of HTTP attempts a request took is the client's retry count plus one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai import AsyncOpenAI

log = logging.getLogger(__name__)

# Requests in flight per client: httpcore's pool scans every connection of a client for each request,
# so a client per this many requests keeps that cost flat as max_concurrency grows.
REQUESTS_PER_CLIENT = 8

_RAW = {"X-Stainless-Raw-Response": "true"}  # have the client return the response with its retry count
RAW_LIMIT = 4000  # characters of an error body kept for the audit


@dataclass(frozen=True)
class Reply:
    """A successful HTTP exchange: the JSON body, the replica that answered, the attempts it took."""

    body: Any
    replica: str
    attempts: int


@dataclass(frozen=True)
class Failure:
    """A request that failed for good: ``reason`` (``http_400``, ``timeout``, ``connection_error``,
    ``invalid_response``), a readable message, the raw body when there was one, the attempts made."""

    reason: str
    message: str
    replica: str
    attempts: int
    raw: str | None = None

    @property
    def error(self) -> str:
        return f"{self.reason}: {self.message}"


class ServerPool:
    """Clients for the replicas of one server set and the process-wide bound on requests in flight.

    Each replica gets one client per ``REQUESTS_PER_CLIENT`` requests of ``max_concurrency``, used in turn.

    Build it (and use it) on the judging loop's thread: the semaphore belongs to that loop.
    """

    def __init__(
        self,
        urls: Sequence[str],
        api_key: str | None,
        *,
        request_timeout: float,
        max_retries: int,
        max_concurrency: int,
    ) -> None:
        from openai import AsyncOpenAI

        self.urls = tuple(urls)
        per_replica = -(-max_concurrency // REQUESTS_PER_CLIENT)
        self.clients: list[list[AsyncOpenAI]] = [
            [
                AsyncOpenAI(
                    base_url=url,
                    api_key=api_key or "EMPTY",  # vLLM without --api-key accepts any key
                    timeout=request_timeout,
                    max_retries=max_retries,
                )
                for _ in range(per_replica)
            ]
            for url in self.urls
        ]
        self.in_flight = [0] * len(self.urls)
        self._turns = [0] * len(self.urls)
        self.max_concurrency = max_concurrency
        self.request_timeout = request_timeout
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self._next = 0

    def _pick(self) -> int:
        """The replica with the fewest requests in flight; ties go round-robin."""
        n = len(self.urls)
        start, self._next = self._next, (self._next + 1) % n
        return min(((start + k) % n for k in range(n)), key=lambda i: self.in_flight[i])

    async def post(self, path: str, body: dict[str, Any]) -> Reply | Failure:
        """POST ``body`` as JSON to ``path`` (relative to the base URL, or absolute from the server root
        when it starts with ``/``) on the least busy replica, within the process's in-flight bound."""
        async with self.semaphore:
            index = self._pick()
            self.in_flight[index] += 1
            try:
                return await self._post(index, path, body)
            finally:
                self.in_flight[index] -= 1

    async def _post(self, index: int, path: str, body: dict[str, Any]) -> Reply | Failure:
        import openai

        clients, replica = self.clients[index], self.urls[index]
        client = clients[self._turns[index] % len(clients)]
        self._turns[index] += 1
        url = server_root(replica) + path if path.startswith("/") else path
        try:
            response: Any = await client.post(url, cast_to=object, body=body, options={"headers": _RAW})
        except openai.APIStatusError as e:
            return Failure(
                f"http_{e.status_code}",
                _status_message(e),
                replica,
                _attempts(e.response.request),
                e.response.text[:RAW_LIMIT],
            )
        except openai.APITimeoutError as e:
            attempts = _attempts(e.request)
            message = f"no reply within request_timeout ({self.request_timeout:g} s), {attempts} attempt(s)"
            return Failure("timeout", message, replica, attempts)
        except openai.APIConnectionError as e:
            cause = e.__cause__ or e
            return Failure(
                "connection_error", f"{type(cause).__name__}: {cause}", replica, _attempts(e.request)
            )
        attempts = response.retries_taken + 1
        try:
            return Reply(response.parse(), replica, attempts)
        except ValueError as e:  # a 200 whose body is not JSON
            raw = response.text[:RAW_LIMIT]
            return Failure("invalid_response", f"the body is not JSON: {e}", replica, attempts, raw)

    async def models(self, index: int) -> list[str]:
        """The model ids a replica serves (``GET /models``)."""
        page = await self.clients[index][0].models.list()
        return [m.id for m in page.data]


def server_root(base_url: str) -> str:
    """The server's root URL: the base URL without its trailing ``/v1`` (vLLM's pooling routes live there)."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def _attempts(request: Any) -> int:
    try:
        return int(request.headers.get("x-stainless-retry-count", "0")) + 1
    except (AttributeError, ValueError):
        return 1


def _status_message(error: Any) -> str:
    message = str(getattr(error, "message", "") or error)
    return message[:500]
