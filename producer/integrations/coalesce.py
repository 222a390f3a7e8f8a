"""Coalescing: many callers' samples, one submission per short window.

Per-sample callers (verl's reward functions, the gateway's slime and ``/classify`` routes) each hand
:meth:`Coalescer.submit` their rows and get a future of a :class:`Slot`: the batch's result and where
their rows sit in it. A background thread sends the calls that queued up while the previous batch was
in flight, and those that follow until none arrives for ``window`` seconds, as one batch (a call's rows
stay together), so concurrent callers share a round trip. If scoring the batch raises, every call in it
gets the exception.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from rewardq.results import ScoreResult

DEFAULT_WINDOW_MS = 5.0
MAX_COALESCED = 4096  # rows in one batch; a batch is closed once it holds this many

Rows = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Slot:
    """One call's share of a coalesced batch: ``result`` rows ``offset`` to ``offset + size``."""

    result: ScoreResult
    offset: int
    size: int

    @property
    def totals(self) -> list[float | None]:
        return self.result.totals[self.offset : self.offset + self.size]

    def values(self, i: int) -> dict[str, float | None]:
        """Row i's (of this call) value per reward."""
        return {name: column[self.offset + i] for name, column in self.result.rewards.items()}


@dataclass(frozen=True)
class _Call:
    rows: Rows
    future: Future[Slot]


class Coalescer:
    """Sends the rows of concurrent calls to ``score`` in batches (see the module's docstring)."""

    def __init__(
        self,
        score: Callable[[list[Mapping[str, Any]]], ScoreResult],
        window: float,
        *,
        max_rows: int = MAX_COALESCED,
        name: str = "rewardq-coalescer",
    ) -> None:
        self.score = score
        self.window = window
        self.max_rows = max_rows
        self.name = name
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, rows: Rows) -> Future[Slot]:
        """Queue one call's rows; the future holds its slot once their batch is scored."""
        call = _Call(rows, Future())
        self._queue.put(call)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._batch_forever, name=self.name, daemon=True)
                self._thread.start()
        return call.future

    def close(self) -> None:
        """Stop the thread once the calls queued before this one are scored."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _batch_forever(self) -> None:
        while True:
            batch, more = self._next_batch()
            if batch:
                self._send(batch)
            if not more:
                return

    def _send(self, batch: list[_Call]) -> None:
        rows = [row for call in batch for row in call.rows]
        try:
            result = self.score(rows)
        except Exception as e:
            for call in batch:
                call.future.set_exception(e)
            return
        offset = 0
        for call in batch:
            call.future.set_result(Slot(result, offset, len(call.rows)))
            offset += len(call.rows)

    def _next_batch(self) -> tuple[list[_Call], bool]:
        """The first waiting call and those that follow it, until none arrives for a window; and
        whether to go on (False once :meth:`close` was called)."""
        first = self._queue.get()
        if first is None:
            return [], False
        batch, size = [first], len(first.rows)
        while size < self.max_rows:
            try:
                call = self._queue.get(timeout=self.window)
            except queue.Empty:
                break
            if call is None:
                return batch, False
            batch.append(call)
            size += len(call.rows)
        return batch, True
