"""A worker process's sealer: a background thread that chains the audit rows this process wrote into their
runs' hash chains soon after they commit (:func:`rewardq.storage.seal.seal_run`), off the task's path.

- After each audit write the task names its runs (:meth:`Sealer.wrote`); the thread wakes, waits
  :data:`GATHER_S` so that one pass seals the rows of many tasks, and seals those runs.
- A run another sealer holds (another worker process is sealing it) is tried again after
  :data:`RETRY_S`, as is every run after a failure of the store (an outage): rows committed before
  the mark are sealed by whichever sealer gets the run next, so none is left behind.
- Every :data:`SWEEP_S` (and first when it starts) it also seals every run that has unsealed rows,
  whoever wrote them: rows of a worker killed between its commit and its seal, rows of ``rewardq
  score`` runs whose workers stopped.
- :meth:`Sealer.close` stops the thread and seals what this process wrote, once, before the process
  ends (its audit engine is closed after it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

GATHER_S = 0.2
RETRY_S = 1.0
SWEEP_S = 60.0
_JOIN_S = 30.0


class Sealer:
    """Seals, in its own thread, the runs this process wrote to, and now and then every unsealed run."""

    def __init__(self, engine: Engine, key: bytes | None) -> None:
        self._engine = engine
        self._key = key
        self._dirty: set[str] = set()
        self._refused: set[str] = set()  # runs sealed with another key: logged once, left alone
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rewardq-sealer", daemon=True)
        self._thread.start()

    def wrote(self, runs: Iterable[str]) -> None:
        """Rows of ``runs`` were committed: seal them soon."""
        with self._guard:
            self._dirty.update(runs)
        self._wake.set()

    def close(self) -> None:
        """Stop the thread and seal what is still marked, once (the process is ending)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(_JOIN_S)
        self._seal_marked()

    def _run(self) -> None:
        next_sweep = 0.0
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_sweep - time.monotonic()))
            if self._stop.wait(GATHER_S):
                return
            self._wake.clear()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_S
                self._sweep()
            if not self._seal_marked():
                self._stop.wait(RETRY_S)
                self._wake.set()

    def _sweep(self) -> None:
        from rewardq.storage.seal import unsealed_runs

        try:
            with self._engine.connect() as conn:
                runs = unsealed_runs(conn)
        except Exception as e:
            log.warning("audit sealer: could not list unsealed runs: %s", e)
            return
        with self._guard:
            self._dirty.update(runs)

    def _seal_marked(self) -> bool:
        """Seal the marked runs; True when none is left marked (none busy, no failure)."""
        from rewardq.storage.seal import WrongSealKey, seal_run

        with self._guard:
            runs, self._dirty = self._dirty - self._refused, set()
        left = set()
        for run in sorted(runs):
            try:
                if seal_run(self._engine, run, self._key) is None:
                    left.add(run)
            except WrongSealKey as e:
                log.error("audit sealer: %s; its rows are left unsealed", e)
                self._refused.add(run)
            except Exception as e:
                log.warning("audit sealer: sealing run %s failed, will retry: %s", run, e)
                left.add(run)
        if left:
            with self._guard:
                self._dirty |= left
        return not left
