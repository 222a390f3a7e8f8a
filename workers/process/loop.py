"""The per-process event loop that synchronous ``Reward.score`` calls hand their coroutines to.

One loop per worker process, in a daemon thread, shared through ``WorkerResources.shared(LOOP_KEY, …)``
by every reward that waits on I/O (judges, async reward functions): every task of the process (solo, or
several threads of a threads pool) submits to it, so one ``asyncio.Semaphore`` bounds the requests in
flight of the whole process, and clients an async function caches (an ``AsyncOpenAI``) stay bound to a
live loop (TRL does the same: ``GRPOTrainer.async_loop``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

LOOP_KEY = "rewardq.workers.process.loop"


class LoopThread:
    """An asyncio loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rewardq-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (the coroutine bounds its own time)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.run called from its own loop")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def gather(self, awaitables: Iterable[Awaitable[Any]]) -> list[Any]:
        """Run the awaitables concurrently; each one's result, or the exception it raised, in order."""

        async def run_all() -> list[Any]:
            return await asyncio.gather(*awaitables, return_exceptions=True)

        return self.run(run_all())

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
