"""One asyncio event loop on a daemon thread, on which async reward functions run from any thread.

TRL does the same (``GRPOTrainer.async_loop``): one loop that outlives every call, so that clients an
async function caches (an ``AsyncOpenAI``) stay bound to a live loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Iterable
from typing import Any


class EventLoopThread:
    """Runs awaitables on its loop and waits for them; the thread starts on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def gather(self, awaitables: Iterable[Awaitable[Any]]) -> list[Any]:
        """Run the awaitables concurrently; each one's result, or the exception it raised, in order."""

        async def run_all() -> list[Any]:
            return await asyncio.gather(*awaitables, return_exceptions=True)

        return asyncio.run_coroutine_threadsafe(run_all(), self._running()).result()

    def close(self) -> None:
        with self._lock:
            if self._loop is None or self._thread is None:
                return
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
            self._loop = self._thread = None

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="rewardq-function-loop", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop
