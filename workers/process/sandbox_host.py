"""What the sandbox (``sandbox.py``) keeps track of on the host, beyond one run: which unprivileged uids
runs hold, and the sandboxes a killed caller left behind.

A uid is held by binding an abstract Unix socket named after it: visible to every process in this
network namespace, released by the kernel when its holder dies, nothing on disk.

Left-behind sandboxes: bwrap's child waits for its parent to finish setting it up before it arms its own
parent-death signal, so a caller killed in that moment (its bwrap dying with it) leaves the child
waiting forever (bubblewrap issue #633). That child is a PID-namespace init whose parent is not a bwrap
of ours: :func:`sweep` kills those.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

HOSTNAME = "rewardq-sandbox"  # every sandbox's bwrap command line holds "--hostname rewardq-sandbox"
UID_BASE = 40000  # root runs each program as one of UID_BASE .. UID_BASE + UID_SLOTS - 1
UID_SLOTS = 1000
_MARK = f"--hostname\0{HOSTNAME}\0".encode()


@contextlib.contextmanager
def uid_slot() -> Iterator[int]:
    """An unprivileged uid that no other run on this host holds while the block runs."""
    for slot in range(UID_SLOTS):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(f"\0rewardq-sandbox-uid-{slot}")
        except OSError:
            sock.close()
            continue
        try:
            yield UID_BASE + slot
        finally:
            sock.close()
        return
    raise RuntimeError(f"sandbox: all {UID_SLOTS} sandbox uids are in use")


def _ours(pid: str) -> bool:
    with contextlib.suppress(OSError):
        return _MARK in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def sweep() -> list[int]:
    """Kill the sandboxes whose bwrap died while setting them up; their pids."""
    killed = []
    for status in Path("/proc").glob("[0-9]*/status"):
        pid = status.parent.name
        if not _ours(pid):
            continue
        with contextlib.suppress(OSError):
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            is_init = fields["NSpid"].split()[-1] == "1"
            if is_init and not _ours(fields["PPid"].strip()):
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
    return killed
