"""The Sandbox Fusion backend: each run is one ``POST {url}/run_code`` to a Sandbox Fusion server (the one
verl's ``sandbox_fusion`` scorer uses), through the judges' :class:`ServerPool`: a bound on requests in
flight per worker process, retries of connection errors, timeouts, 408/409/429 and 5xx with backoff.

A reply becomes an :class:`Outcome`: ``run_result.status`` ``TimeLimitExceeded`` is ``time_limit``,
``Finished`` is ``exited`` with its return code, a failed compilation is ``exited`` with the compiler's
code and output; ``status: SandboxError``, or a request that failed for good, is :class:`SandboxBroken`.
Sandbox Fusion reports no memory or output verdicts: a program killed for memory is a non-zero exit, and
an output over ``max_output_kb`` is ``output_limit`` once it has come back.
"""

from __future__ import annotations

from typing import Any

from rewardq.wire.errors import RewardSetupError
from rewardq.workers.process.loop import LoopThread
from rewardq.workers.process.sandbox import Limits, Outcome
from rewardq.workers.rewards.code.programs import Language
from rewardq.workers.rewards.code.runners import COMPILE_FAILED, SandboxBroken
from rewardq.workers.rewards.judges.servers import Failure, ServerPool

COMPILE_TIMEOUT = 30.0  # seconds Sandbox Fusion may spend compiling a C++ program
REQUEST_SLACK = 30.0  # seconds a request may take beyond the run's and the compilation's limits
STDERR_TAIL = 4096


class FusionRunner:
    """Runs programs on a Sandbox Fusion server; thread-safe (requests go through the worker's event loop)."""

    def __init__(
        self,
        url: str,
        language: Language,
        loop: LoopThread,
        *,
        time_limit: float,
        max_concurrency: int,
        max_retries: int,
    ) -> None:
        self.url = url.rstrip("/").removesuffix("/run_code")  # verl's setting names the endpoint itself
        self.language = language
        self.loop = loop

        async def build() -> ServerPool:
            return ServerPool(
                [self.url],
                None,
                request_timeout=time_limit + COMPILE_TIMEOUT + REQUEST_SLACK,
                max_retries=max_retries,
                max_concurrency=max_concurrency,
            )

        self.pool = loop.run(build())

    def check(self) -> None:
        """Raise RewardSetupError unless the server answers ``GET /v1/ping``."""
        import aiohttp

        async def ping() -> str | None:
            try:
                async with self.pool.session.get(
                    f"{self.url}/v1/ping", proxy=self.pool.proxies[0]
                ) as response:
                    return None if response.status == 200 else f"GET /v1/ping answered HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as e:
                return f"{type(e).__name__}: {e}"

        problem = self.loop.run(ping())
        if problem is not None:
            raise RewardSetupError(f"the Sandbox Fusion server at {self.url} does not answer: {problem}")

    def run(self, source: str, stdin: str, limits: Limits) -> Outcome:
        body = {
            "code": source,
            "language": self.language,
            "stdin": stdin,
            "run_timeout": limits.time_s,
            "compile_timeout": COMPILE_TIMEOUT,
            "memory_limit_MB": limits.memory_mb,
        }
        reply = self.loop.run(self.pool.post("run_code", body))
        if isinstance(reply, Failure):
            raise SandboxBroken(f"Sandbox Fusion at {self.url}: {reply.error}")
        return outcome(reply.body, limits)

    def forget(self) -> None:
        """Nothing is kept between chunks."""

    def close(self) -> None:
        self.pool.close()


def outcome(body: Any, limits: Limits) -> Outcome:
    """A ``/run_code`` reply as an Outcome; SandboxBroken for a sandbox error or a reply of another shape."""
    if not isinstance(body, dict) or body.get("status") not in ("Success", "Failed", "SandboxError"):
        raise SandboxBroken(f"Sandbox Fusion replied with no run status: {str(body)[:200]}")
    if body["status"] == "SandboxError":
        raise SandboxBroken(f"Sandbox Fusion: SandboxError: {str(body.get('message', ''))[:300]}")
    compiled, ran = body.get("compile_result"), body.get("run_result")
    if isinstance(compiled, dict) and (
        compiled.get("status") != "Finished" or compiled.get("return_code") != 0
    ):
        stderr = COMPILE_FAILED + _tail(f"{compiled.get('status')}: {compiled.get('stderr') or ''}")
        return Outcome("exited", compiled.get("return_code") or 1, b"", stderr, _wall(compiled))
    if not isinstance(ran, dict):
        raise SandboxBroken("Sandbox Fusion replied with no run_result")
    stdout = (ran.get("stdout") or "").encode()
    stderr = _tail(ran.get("stderr") or "")
    if ran.get("status") == "TimeLimitExceeded":
        return Outcome("time_limit", None, stdout, stderr, _wall(ran))
    if len(stdout) > limits.output_kb * 1024:
        return Outcome("output_limit", None, stdout[: limits.output_kb * 1024], stderr, _wall(ran))
    return Outcome("exited", ran.get("return_code"), stdout, stderr, _wall(ran))


def _tail(text: str) -> bytes:
    return text.encode()[-STDERR_TAIL:]


def _wall(result: dict[str, Any]) -> float:
    value = result.get("execution_time")
    return float(value) if isinstance(value, int | float) else 0.0
