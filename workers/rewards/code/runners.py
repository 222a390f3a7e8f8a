"""Running one program on one input: the :class:`Runner` boundary and its local implementation, a fresh
bubblewrap sandbox per run (:mod:`rewardq.workers.process.sandbox`). A Runner is thread-safe: the reward
runs cases concurrently on a thread pool. A run that the sandbox itself cannot make raises
:class:`SandboxBroken`; whatever the program does is an :class:`Outcome`.

C++ is compiled once per program (``g++ -O2 -std=c++17``) in a sandbox of its own, which prints the binary;
each case then runs that binary in a fresh sandbox.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from concurrent.futures import Future
from typing import Protocol

from rewardq.wire.errors import RewardqError
from rewardq.workers.process.sandbox import (
    PYTHON_FLAGS,
    Limits,
    Outcome,
    Sandbox,
    SandboxUnavailable,
    python_paths,
)
from rewardq.workers.rewards.code.programs import Language

COMPILE_LIMITS = Limits(time_s=30.0, memory_mb=2048, output_kb=64 * 1024, processes=64)
CPP_FLAGS = ("-O2", "-std=c++17", "-pipe", "-o", "main", "main.cpp")
COMPILE_FAILED = b"compilation failed: "
"""How the standard error of a failed compilation's Outcome starts (both backends), then the compiler's."""


class SandboxBroken(RewardqError):
    """Raised when a run could not be made at all (the sandbox, or the Sandbox Fusion server, failed)."""


class Runner(Protocol):
    """Runs a program's source on one standard input within limits."""

    def run(self, source: str, stdin: str, limits: Limits) -> Outcome: ...

    def forget(self) -> None:
        """Drop what was kept for the chunk just scored (compiled binaries)."""

    def close(self) -> None: ...


class LocalRunner:
    """Each run in a fresh local sandbox; C++ binaries compiled once per source and kept for the chunk."""

    def __init__(self, language: Language) -> None:
        self.language = language
        self.sandbox = Sandbox.find()
        self.python, self.python_binds = python_paths()
        self._binaries: dict[str, Future[Outcome | bytes]] = {}
        self._lock = threading.Lock()
        if language == "cpp":
            compiler = shutil.which("g++")
            if compiler is None:
                raise SandboxUnavailable("language 'cpp' needs g++ on PATH")
            self.compiler = compiler

    def run(self, source: str, stdin: str, limits: Limits) -> Outcome:
        try:
            if self.language == "python":
                return self.sandbox.run(
                    [self.python, *PYTHON_FLAGS, "main.py"],
                    files={"main.py": source.encode()},
                    stdin=stdin.encode(),
                    limits=limits,
                    readonly=self.python_binds,
                )
            binary = self._compiled(source)
            if isinstance(binary, Outcome):
                return binary
            return self.sandbox.run(["./main"], files={"main": binary}, stdin=stdin.encode(), limits=limits)
        except SandboxUnavailable as e:
            raise SandboxBroken(str(e)) from e
        except OSError as e:
            raise SandboxBroken(f"the sandbox could not run: {type(e).__name__}: {e}") from e

    def _compiled(self, source: str) -> Outcome | bytes:
        """The binary of a C++ source, or the failed compilation's Outcome (the program's failure).

        The first case of a program compiles it; its other cases, on other threads, wait for that."""
        key = hashlib.sha256(source.encode()).hexdigest()
        with self._lock:
            future = self._binaries.get(key)
            mine = future is None
            if future is None:
                future = self._binaries[key] = Future()
        if not mine:
            return future.result()
        try:
            outcome = self.sandbox.run(
                ["/bin/sh", "-c", f"{self.compiler} {' '.join(CPP_FLAGS)} >&2 && cat main"],
                files={"main.cpp": source.encode()},
                limits=COMPILE_LIMITS,
            )
        except BaseException as e:
            future.set_exception(e)
            with self._lock:
                self._binaries.pop(key, None)
            raise
        if outcome.verdict == "exited" and outcome.exit_code == 0:
            future.set_result(outcome.stdout)
        else:
            why = outcome.stderr if outcome.verdict == "exited" else outcome.verdict.encode()
            future.set_result(
                Outcome("exited", outcome.exit_code or 1, b"", COMPILE_FAILED + why, outcome.wall_s)
            )
        return future.result()

    def forget(self) -> None:
        with self._lock:
            self._binaries.clear()

    def close(self) -> None:
        self.forget()
