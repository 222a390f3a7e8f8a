"""Worker "hosts" on one machine: Linux network namespaces, each joined to this one by a veth pair.

Host ``i`` is the namespace ``rqh<tag>-<i>``; its end of the pair has ``10.<n>.<i>.2/24`` and this
machine's end ``10.<n>.<i>.1/24`` (``gateway(i)``; ``n``: the first ``10.n.0.0/16`` no interface here has
an address in), so a server bound to the gateways is reached from
that host over its link only, and ``cut(i)`` / ``restore(i)`` (``ip link set DEV down|up`` on this
machine's end) take the link away and give it back. Needs root and iproute2; ``why_not()`` says why
namespaces cannot be made here. Used by tests/faults/test_fault_hosts.py and bench/many_hosts.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid


def why_not() -> str | None:
    """None when namespaces and veth pairs can be made here, else the reason in one line."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    probe = f"rqprobe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


class Hosts:
    """``count`` namespaces with a veth link each; ``destroy`` removes them (deleting a namespace
    deletes its veth end, and with it the pair)."""

    def __init__(self, count: int) -> None:
        self.tag = uuid.uuid4().hex[:4]
        self.subnet = _free_subnet()
        self.names: list[str] = []
        try:
            for i in range(count):
                self._add(i)
        except BaseException:
            self.destroy()
            raise

    def _add(self, i: int) -> None:
        ns, outer, inner = f"rqh{self.tag}-{i}", f"rq{self.tag}o{i}", f"rq{self.tag}i{i}"
        _ip("netns", "add", ns)
        self.names.append(ns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("addr", "add", f"{self.gateway(i)}/24", "dev", outer)
        _ip("link", "set", outer, "up")
        _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def gateway(self, i: int) -> str:
        """This machine's address on host ``i``'s link (where that host reaches Redis and PostgreSQL)."""
        return f"10.{self.subnet}.{i}.1"

    def address(self, i: int) -> str:
        return f"10.{self.subnet}.{i}.2"

    @property
    def gateways(self) -> list[str]:
        return [self.gateway(i) for i in range(len(self.names))]

    @property
    def network(self) -> str:
        """The CIDR that holds every host's link (for PostgreSQL's pg_hba.conf)."""
        return f"10.{self.subnet}.0.0/16"

    def exec_prefix(self, i: int) -> list[str]:
        """Prepended to a command, runs it on host ``i`` (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.names[i]]

    def cut(self, i: int) -> None:
        """Host ``i`` loses its link: packets either way are dropped, connections hang, not reset."""
        _ip("link", "set", f"rq{self.tag}o{i}", "down")

    def restore(self, i: int) -> None:
        _ip("link", "set", f"rq{self.tag}o{i}", "up")

    def destroy(self) -> None:
        for i, ns in enumerate(self.names):
            with contextlib.suppress(subprocess.CalledProcessError):  # gone with its namespace already
                _ip("link", "delete", f"rq{self.tag}o{i}")
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "delete", ns)
        self.names = []


def _free_subnet() -> int:
    """The first ``n`` from 77 on such that no interface here has an address in ``10.n.0.0/16``."""
    listed = subprocess.run(["ip", "-o", "-4", "addr"], check=True, capture_output=True, text=True).stdout
    used = {
        int(word.split(".")[1]) for word in listed.split() if word.startswith("10.") and word.count(".") == 3
    }
    return next(n for n in range(77, 255) if n not in used)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)
