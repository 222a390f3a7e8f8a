"""The servers a reward talks to: one ``aiohttp`` session per server set, a bound on requests in flight,
load spread over the replicas, retries (:mod:`.retries`), and every failure turned into a :class:`Failure`
with its reason.

Bodies are encoded and replies decoded with orjson; the hot path builds nothing per request that it can
build once (headers per attempt, proxies). The number of HTTP attempts a request took is its retries plus
one. ``request_timeout`` bounds each attempt, from sending the request to the last byte of the reply.
What this costs against the ``openai`` client it replaced: docs/benchmarks.md#judges.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from rewardq.workers.process import metrics
from rewardq.workers.rewards.judges.retries import RETRY_COUNT_HEADER, delay, should_retry

log = logging.getLogger(__name__)

RAW_LIMIT = 4000  # characters of an error body kept for the audit
MESSAGE_LIMIT = 500  # characters of an error message
# Seconds an idle connection is reused: under vLLM's (uvicorn's) 5 s, so that a request is never sent on a
# connection the server is closing (httpx, under the openai client, kept 5 s).
KEEPALIVE = 4.0


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
    """One HTTP session for the replicas of one server set and the process-wide bound on requests in flight.

    Build it (and use it) on the judging loop's thread: the session and the semaphore belong to that loop.
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
        import aiohttp

        self.urls = tuple(urls)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_concurrency, keepalive_timeout=KEEPALIVE),
            timeout=aiohttp.ClientTimeout(total=request_timeout),
        )
        # Proxies from the environment, read once (aiohttp's trust_env reads them and ~/.netrc per request).
        self.proxies = [env_proxy(url) for url in self.urls]
        headers = {
            "Authorization": f"Bearer {api_key or 'EMPTY'}",  # vLLM without --api-key accepts any key
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        # The headers of attempt k, built once: the hot path copies nothing.
        self._headers = [{**headers, RETRY_COUNT_HEADER: str(k)} for k in range(max_retries + 1)]
        self.in_flight = [0] * len(self.urls)
        self.max_retries = max_retries
        self.timeout = request_timeout
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self._loop = asyncio.get_running_loop()
        self._next = 0

    def _pick(self) -> int:
        """The replica with the fewest requests in flight; ties go round-robin."""
        n = len(self.urls)
        start, self._next = self._next, (self._next + 1) % n
        return min(((start + k) % n for k in range(n)), key=lambda i: self.in_flight[i])

    async def post(self, path: str, body: dict[str, Any]) -> Reply | Failure:
        """POST ``body`` as JSON to ``path`` (relative to the base URL, or absolute from the server root
        when it starts with ``/``) on the least busy replica, within the process's in-flight bound."""
        data = orjson.dumps(body)
        async with self.semaphore:
            index = self._pick()
            self.in_flight[index] += 1
            try:
                replica = self.urls[index]
                url = server_root(replica) + path if path.startswith("/") else f"{replica}/{path}"
                return await self._send("POST", url, index, data)
            finally:
                self.in_flight[index] -= 1

    async def models(self, index: int) -> list[str] | Failure:
        """The model ids a replica serves (``GET /models``), or why it did not say."""
        replica = self.urls[index]
        reply = await self._send("GET", f"{replica}/models", index, None)
        if isinstance(reply, Failure):
            return reply
        data = reply.body.get("data") if isinstance(reply.body, dict) else None
        models = data if isinstance(data, list) else []
        return [m["id"] for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def _send(self, method: str, url: str, index: int, data: bytes | None) -> Reply | Failure:
        """A request to replica ``index``, retried as :mod:`.retries` says; the reply or the last failure."""
        import aiohttp

        replica, proxy = self.urls[index], self.proxies[index]
        for retries in range(self.max_retries + 1):
            attempts = retries + 1
            headers: Mapping[str, str] | None = None
            metrics.judge_attempt(replica, retries)
            try:
                async with self.session.request(
                    method, url, data=data, headers=self._headers[retries], proxy=proxy
                ) as response:
                    status, headers, content = response.status, response.headers, await response.read()
            except TimeoutError:
                message = f"no reply within request_timeout ({self.timeout:g} s), {attempts} attempt(s)"
                failure = Failure("timeout", message, replica, attempts)
            except aiohttp.ClientError as e:
                failure = Failure("connection_error", f"{type(e).__name__}: {e}", replica, attempts)
            else:
                if 200 <= status < 300:
                    return _reply(content, replica, attempts)
                message = _status_message(status, content)
                failure = Failure(f"http_{status}", message, replica, attempts, _text(content))
                if not should_retry(status, headers):
                    return failure
            if retries == self.max_retries:
                return failure
            await asyncio.sleep(delay(retries, headers))
        raise AssertionError("unreachable: the last attempt returns")

    def close(self) -> None:
        """Close the session's connections, on its loop (once that loop has stopped the process is ending)."""
        if self._loop.is_running() and not self.session.closed:
            asyncio.run_coroutine_threadsafe(self.session.close(), self._loop).result(timeout=5)


def server_root(base_url: str) -> str:
    """The server's root URL: the base URL without its trailing ``/v1`` (vLLM's pooling routes live there)."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def env_proxy(url: str) -> str | None:
    """The proxy ``http(s)_proxy`` or ``all_proxy`` names for ``url``, unless ``no_proxy`` spares its host."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    parts = urlsplit(url)
    if parts.hostname is None or proxy_bypass(parts.hostname):
        return None
    proxies = getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


def _reply(content: bytes, replica: str, attempts: int) -> Reply | Failure:
    try:
        return Reply(orjson.loads(content), replica, attempts)
    except orjson.JSONDecodeError as e:  # a 2xx whose body is not JSON
        return Failure("invalid_response", f"the body is not JSON: {e}", replica, attempts, _text(content))


def _text(content: bytes) -> str:
    return content.decode("utf-8", "replace")[:RAW_LIMIT]


def _status_message(status: int, content: bytes) -> str:
    """``Error code: 400 - <the body's error message>``, as the openai client words it."""
    message = f"Error code: {status}"
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return message
    error = body.get("error", body) if isinstance(body, dict) else None
    text = error.get("message") if isinstance(error, dict) else None
    if isinstance(text, str) and text:
        message += f" - {text}"
    return message[:MESSAGE_LIMIT]
