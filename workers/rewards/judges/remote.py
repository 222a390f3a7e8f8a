"""The base of the server-backed reward kinds: set-up (clients, model discovery, the cache) and the
asking of a call's requests: serve what the cache holds, send the rest concurrently within the task's
deadline, re-ask replies that did not parse, cache what succeeded.

:class:`ServerReward` says where requests are sent (``path``) and how a reply is read
(:meth:`ServerReward.read`); :class:`SampleServerReward` makes one request of each sample
(:meth:`SampleServerReward.prepare`, identical requests sent once). Kinds that see a group build their own
requests and hand them all to :meth:`ServerReward.ask`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.workers.process.loop import LOOP_KEY, LoopThread
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.base import Reward, Score
from rewardq.workers.rewards.judges.cache import RequestCache, request_key
from rewardq.workers.rewards.judges.options import ServerOptions
from rewardq.workers.rewards.judges.results import Outcome, Reading
from rewardq.workers.rewards.judges.servers import Failure, ServerPool

TIMEOUT_MARGIN_S = 60.0
"""A server reward's default ``timeout`` is its ``task_timeout`` plus this: it times its own requests out
first, each sample answered on its own."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """A request: the body of its first ask and its cache key (equal keys are sent once); ``completions``
    is how many completions it asks about (a group judge reads that many scores from the reply)."""

    key: str
    body: dict[str, Any]
    completions: int = 1


class ServerReward(Reward):
    """A reward whose scores come from an OpenAI-compatible server (one or several replicas)."""

    options: ServerOptions
    runs_in = "process"
    timeout_default = ServerOptions.model_fields["task_timeout"].default + TIMEOUT_MARGIN_S
    path: str
    """Where requests go: relative to the base URL (``chat/completions``), or from the server root
    when it starts with ``/`` (``/pooling``)."""
    max_reasks: int = 0
    """How many times a reply that did not parse is asked again."""
    template_hash: str | None = None
    """The prompt template's hash, recorded with every score (judges)."""

    def __init__(self, name: str, options: ServerOptions) -> None:
        super().__init__(name, options)
        self.model = options.model or ""
        self._loop: LoopThread | None = None
        self._pool: ServerPool | None = None
        self._cache: RequestCache | None = None

    @property
    def time_limit(self) -> float:
        """The ``timeout`` option, else ``task_timeout`` + :data:`TIMEOUT_MARGIN_S` (``timeout_default``
        for the default ``task_timeout``)."""
        if self.options.timeout is not None:
            return self.options.timeout
        return self.options.task_timeout + TIMEOUT_MARGIN_S

    def identity(self) -> dict[str, str]:
        return {"model": self.options.model} if self.options.model else {}

    # --- what a kind defines -------------------------------------------------------------------------

    @abstractmethod
    def read(self, body: Any, request: Request) -> Reading:
        """Read the JSON body of the reply to ``request``."""

    def reader_identity(self) -> dict[str, Any]:
        """What decides how a reply is read: part of the cache key."""
        return {}

    def reask_body(self, body: dict[str, Any], reask: int) -> dict[str, Any]:
        """The body of the ``reask``-th re-ask of a reply that did not parse."""
        return body

    # --- set-up ----------------------------------------------------------------------------------

    def setup(self, resources: WorkerResources) -> None:
        options = self.options
        api_key = _api_key(self.name, options.api_key_env)
        self._loop = loop = resources.shared(LOOP_KEY, LoopThread)
        pool_key = (
            "rewardq.judging.pool",
            options.base_url,
            options.api_key_env,
            options.request_timeout,
            options.max_retries,
            options.max_concurrency,
        )

        async def build() -> ServerPool:
            return ServerPool(
                options.base_url,
                api_key,
                request_timeout=options.request_timeout,
                max_retries=options.max_retries,
                max_concurrency=options.max_concurrency,
            )

        self._pool = resources.shared(pool_key, lambda: loop.run(build()))
        self.model = loop.run(self._check_servers(self._pool))
        if options.cache:
            self._cache = RequestCache(resources.cache, options.cache_ttl)
        log.info("reward %s: %s at %s", self.name, self.model, ", ".join(options.base_url))

    async def _check_servers(self, pool: ServerPool) -> str:
        """Every replica answers ``GET /models`` and serves the model; the model when none is configured."""
        model = self.options.model
        for index, url in enumerate(pool.urls):
            served = await pool.models(index)
            if isinstance(served, Failure):
                raise RewardSetupError(f"reward {self.name!r}: {_unanswered(url, served, self.options)}")
            if not served:
                raise RewardSetupError(f"reward {self.name!r}: {url} serves no model")
            if model is None:
                model = served[0]
            elif model not in served:
                raise RewardSetupError(f"reward {self.name!r}: {url} serves {served}, not {model!r}")
        assert model is not None
        return model

    # --- asking -----------------------------------------------------------------------------------

    def request(self, body: dict[str, Any], completions: int = 1) -> Request:
        """The request of a first ask's body (``model`` is added), keyed by all that decides its result."""
        body = {"model": self.model, **body}
        reader = {"reader": self.reader_identity(), "version": self.version}
        return Request(request_key(self.kind, self.model, body, reader), body, completions)

    def ask(self, requests: Sequence[Request]) -> dict[str, Outcome]:
        """The outcome of each request by key: from the cache, else sent (all at once, within the call's
        deadline) and cached when it succeeded. Requests with equal keys are sent once."""
        if self._loop is None or self._pool is None:
            raise RuntimeError(f"reward {self.name!r} was not set up")
        unique = list({r.key: r for r in requests}.values())
        outcomes: dict[str, Outcome] = {}
        if self._cache is not None:
            cached = self._cache.get_many([r.key for r in unique])
            outcomes = {
                r.key: Outcome.cached_as(c) for r, c in zip(unique, cached, strict=True) if c is not None
            }
        pending = [r for r in unique if r.key not in outcomes]
        if pending:
            asked = self._loop.run(self._ask_all(pending))
            if self._cache is not None:
                for key, outcome in asked.items():
                    if outcome.ok:
                        self._cache.put(key, outcome.cached())
            outcomes.update(asked)
        return outcomes

    async def _ask_all(self, requests: list[Request]) -> dict[str, Outcome]:
        """Send every request concurrently; those not done by ``task_timeout`` are timed out, and so are
        those not done a second before the reward's ``timeout`` when that comes first (cancelled here,
        each sample answered on its own, before the worker's watchdog would time the whole chunk out)."""
        tasks = {r.key: asyncio.ensure_future(self._ask(r)) for r in requests}
        limit = self.time_limit
        budget = min(self.options.task_timeout, max(limit - 1.0, limit / 2))
        _, pending = await asyncio.wait(tasks.values(), timeout=budget)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if budget < self.options.task_timeout:
            error = f"timeout: no answer within the reward's timeout ({limit:g} s)"
        else:
            error = f"timeout: no answer within task_timeout ({self.options.task_timeout:g} s)"
        outcomes = {}
        for key, task in tasks.items():
            if task in pending:
                outcomes[key] = Outcome(None, error, None, 0, None, timed_out=True)
            elif (e := task.exception()) is not None:  # a bug, not a server's answer: fail this request only
                log.error("reward %s: a request failed", self.name, exc_info=e)
                outcomes[key] = Outcome(None, f"error: {type(e).__name__}: {e}", None, 0, None)
            else:
                outcomes[key] = task.result()
        return outcomes

    async def _ask(self, request: Request) -> Outcome:
        """One request, re-asked while its reply does not parse (up to ``max_reasks`` times)."""
        assert self._pool is not None
        attempts, prompt_tokens, completion_tokens = 0, 0, 0
        for reask in range(self.max_reasks + 1):
            body = request.body if reask == 0 else self.reask_body(request.body, reask)
            reply = await self._pool.post(self.path, body)
            attempts += reply.attempts
            if isinstance(reply, Failure):
                return Outcome(
                    None, reply.error, reply.raw, attempts, reply.replica, timed_out=reply.reason == "timeout"
                )
            reading = self.read(reply.body, request)
            prompt_tokens += reading.prompt_tokens or 0
            completion_tokens += reading.completion_tokens or 0
            if not reading.reaskable:
                break
        return Outcome(
            reading.value,
            reading.error,
            reading.raw,
            attempts,
            reply.replica,
            prompt_tokens or None,
            completion_tokens or None,
            reading.truncated,
        )


class SampleServerReward(ServerReward):
    """A server reward that makes one request of each sample; identical requests of a call are sent once."""

    @abstractmethod
    def prepare(self, sample: Sample) -> dict[str, Any] | Score:
        """The request body of a sample's first ask (``model`` is added), or the Score it gets instead."""

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        scores: list[Score | None] = [None] * len(samples)
        users: dict[str, list[int]] = {}
        requests = []
        for i, sample in enumerate(samples):
            body = self.prepare(sample)
            if isinstance(body, Score):
                scores[i] = body
                continue
            request = self.request(body)
            requests.append(request)
            users.setdefault(request.key, []).append(i)
        for key, outcome in self.ask(requests).items():
            first, *duplicates = users[key]
            scores[first] = outcome.score(self.template_hash)
            for i in duplicates:
                scores[i] = outcome.score(self.template_hash, duplicate=True)
        return [s if s is not None else Score.failed("internal error: no score") for s in scores]


def _unanswered(url: str, failure: Failure, options: ServerOptions) -> str:
    """Why a replica's ``GET /models`` failed, worded for the person who configured it."""
    if failure.reason.startswith("http_"):
        status = failure.reason.removeprefix("http_")
        hint = f" (is the key in ${options.api_key_env} right?)" if status == "401" else ""
        return f"{url}/models answered HTTP {status}: {failure.message}{hint}"
    if failure.reason == "invalid_response":
        return f"{url}/models answered {failure.message}"
    return f"cannot reach {url}: {failure.message}"


def _api_key(name: str, variable: str | None) -> str | None:
    """The key from its environment variable; never logged, never stored in options or fingerprints."""
    if variable is None:
        return None
    key = os.environ.get(variable)
    if not key:
        raise RewardSetupError(f"reward {name!r}: api_key_env names ${variable}, which is not set")
    return key
