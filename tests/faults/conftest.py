"""What the fault-injection suite (issue 8, "Delivery guarantees, proven") runs against, and its one check.

- ``fault_redis``: a private ``redis-server`` with an append-only file, so ``restart()`` keeps the queues.
- ``private_postgres``: a PostgreSQL cluster of the test's own (``initdb`` as the ``postgres`` user, a
  free port, a temporary directory) that a test may stop, start and cut connections of.
- ``fault_rewards``: a rewards file with ``slow`` (sleeps, marks the process busy while it scores) and
  ``poison`` (kills its own process while a flag file exists), plus the built-in rule rewards.
- ``kill9``, ``pool_children``: SIGKILL a worker's main process or its pool children (``pgrep -P``).
- ``delivery_check``: the invariant every scenario ends with: for each submitted (batch, sample,
  reward) exactly one audit row and one client result, nothing left in a queue or ``unacked``. It
  returns the counts and appends them, with the scenario's trials and recovery time, to the JSON lines
  file named by REWARDQ_FAULT_REPORT (docs/reliability.md, "The fault-injection suite").
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from rewardq import ScoreResult, Settings
from tests.conftest import RedisServer, free_port, unavailable

PLUGIN = '''\
"""Rewards that misbehave on purpose, for the fault-injection suite."""
import os
import threading
import time
from pathlib import Path

BUSY = Path(os.environ["FAULT_BUSY_DIR"])
DELAY = float(os.environ.get("FAULT_DELAY", "0.3"))


def slow(prompts, completions, **kwargs):
    mark = BUSY / f"{os.getpid()}-{threading.get_ident()}"
    mark.write_text("")
    try:
        time.sleep(DELAY)
        return [float(len(c)) for c in completions]
    finally:
        mark.unlink(missing_ok=True)


def poison(prompts, completions, **kwargs):
    if (BUSY.parent / "poison-on").exists():
        os.kill(os.getppid(), 9)  # the pool process (this reward child's parent), then this child with it
    return [1.0 for _ in completions]
'''

CONFIG = """\
[rewards.slow]
kind = "function"
function = "faultrewards.py:slow"
convention = "trl"

[rewards.poison]
kind = "function"
function = "faultrewards.py:poison"
convention = "trl"
"""

POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


@dataclass
class FaultRewards:
    """The rewards file of the suite and what its plugin reads: the busy directory and the poison flag."""

    config: Path
    busy_dir: Path

    @property
    def poison_flag(self) -> Path:
        return self.busy_dir.parent / "poison-on"

    def env(self, delay: float = 0.3, **extra: str) -> dict[str, str]:
        """Environment of a worker that serves these rewards (``extra``: REWARDQ_* settings)."""
        return {"FAULT_BUSY_DIR": str(self.busy_dir), "FAULT_DELAY": str(delay), **extra}

    def busy_pids(self) -> set[int]:
        """Processes in the middle of a ``slow`` call now (the reward's killable children)."""
        return {int(p.name.split("-")[0]) for p in self.busy_dir.iterdir()}

    def wait_busy(self, among: Iterable[int] | None = None, timeout: float = 30.0) -> int:
        """A pid (of ``among``, when given: a worker or pool process whose reward child is in the call)
        that is scoring a ``slow`` chunk."""
        wanted = None if among is None else set(among)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            scoring = self.busy_pids()
            busy = scoring if wanted is None else {p for pid in scoring for p in _lineage(pid)} & wanted
            if busy:
                return min(busy)
            time.sleep(0.02)
        raise AssertionError(f"no process of {wanted or 'any'} started a slow chunk within {timeout}s")


def _lineage(pid: int) -> list[int]:
    """``pid`` and its ancestors (from /proc; those that have exited end the line)."""
    line = []
    while pid > 1:
        line.append(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return line


@pytest.fixture
def fault_rewards(tmp_path: Path) -> FaultRewards:
    root = tmp_path / "rewards"
    (root / "busy").mkdir(parents=True)
    (root / "faultrewards.py").write_text(PLUGIN)
    (root / "rewards.toml").write_text(CONFIG)
    return FaultRewards(root / "rewards.toml", root / "busy")


class FaultRedis(RedisServer):
    """A private redis-server with an append-only file; ``restart`` stops it and starts it on the same
    port and directory, so it comes back with its queues."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, appendonly=True)

    def restart(self, down_s: float = 0.5) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def fault_redis(tmp_path: Path) -> Iterator[FaultRedis]:
    server = FaultRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PostgresCluster:
    """A PostgreSQL cluster of one test: ``initdb`` run as the ``postgres`` user (it refuses root) in a
    temporary directory that user owns, listening on ``listen`` (127.0.0.1) at a free port, trust
    authentication (from the network ``trust`` too, when given); it tracks commit timestamps, so a test
    can tell when each audit row became durable."""

    def __init__(self, listen: tuple[str, ...] = ("127.0.0.1",), trust: str | None = None) -> None:
        if not POSTGRES_BIN or shutil.which("runuser") is None:
            unavailable("PostgreSQL server binaries (initdb, pg_ctl) or runuser are not installed")
        self.bin = POSTGRES_BIN[-1]
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="rewardq-pg-"))
        shutil.chown(self.root, "postgres")
        self.data = self.root / "data"
        self.listen = listen
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        if trust is not None:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {trust} trust\n")

    @property
    def url(self) -> str:
        return self.url_at(self.listen[0])

    def url_at(self, address: str) -> str:
        """The cluster's URL through one of the addresses it listens on."""
        return f"postgresql+psycopg://postgres@{address}:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd=self.root)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={','.join(self.listen)} -c fsync=off"
            " -c track_commit_timestamp=on"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def terminate_backends(self) -> int:
        """``pg_terminate_backend`` of every other connection to the cluster; how many were cut."""
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                return len(
                    conn.execute(
                        sa.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
                        )
                    ).all()
                )
        finally:
            engine.dispose()

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def pool_children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a prefork worker's pool), from ``pgrep -P``."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


def kill9(pid: int) -> None:
    """SIGKILL one process (no handler runs, nothing is flushed); gone already is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Submitted:
    """One batch a scenario submitted, what came back (None: the client raised) and what it expects:
    each reward's allowed statuses (default ``ok`` only)."""

    batch_id: str
    size: int
    rewards: list[str]
    result: ScoreResult | None
    allowed: dict[str, set[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Counts:
    """What the invariant found; ``clean`` when nothing was lost, duplicated or stranded."""

    scenario: str
    trials: int
    expected: int
    lost: int
    duplicated: int
    stranded: int
    recovery_s: float | None
    problems: list[str]

    @property
    def clean(self) -> bool:
        return self.lost == self.duplicated == self.stranded == 0


class DeliveryCheck:
    """The one invariant of the suite, over an audit store and a Redis broker."""

    def __init__(self, report: Path | None) -> None:
        self.report = report

    def __call__(
        self,
        scenario: str,
        submitted: list[Submitted],
        *,
        database_url: str,
        redis_url: str,
        trials: int,
        recovery_s: float | None = None,
        settle_s: float = 15.0,
    ) -> Counts:
        problems: list[str] = []
        rows = _audit_counts(database_url, {s.batch_id for s in submitted})
        expected = lost = duplicated = 0
        for batch in submitted:
            for reward in batch.rewards:
                allowed = batch.allowed.get(reward, {"ok"})
                statuses = None if batch.result is None else batch.result.statuses.get(reward)
                for index in range(batch.size):
                    expected += 1
                    key = (batch.batch_id, index, reward)
                    count = rows.get(key, 0)
                    status = None if statuses is None or index >= len(statuses) else statuses[index]
                    if count == 0 or status not in allowed:
                        lost += 1
                        problems.append(f"lost {key}: {count} audit rows, result {status!r}")
                    if count > 1:
                        duplicated += 1
                        problems.append(f"duplicated {key}: {count} audit rows")
        stranded = _stranded(redis_url, settle_s)
        if stranded:
            problems.append(f"stranded: {stranded} messages in queues or unacked")
        counts = Counts(scenario, trials, expected, lost, duplicated, stranded, recovery_s, problems[:20])
        if self.report is not None:
            record = {k: v for k, v in asdict(counts).items() if k != "problems"}
            with self.report.open("a") as out:
                out.write(json.dumps(record) + "\n")
        return counts


def _audit_counts(database_url: str, batch_ids: set[str]) -> dict[tuple[str, int, str], int]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT batch_id, sample_index, reward, count(*) FROM scores"
                    " WHERE batch_id IN :ids GROUP BY batch_id, sample_index, reward"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": sorted(batch_ids)},
            ).all()
    finally:
        engine.dispose()
    return {(b, int(i), r): int(c) for b, i, r, c in found}


def queued_messages(client: redis.Redis) -> int:
    """Messages waiting in any reward queue (every priority list) plus those delivered, not acknowledged."""
    waiting = sum(int(client.llen(key)) for key in client.scan_iter(match="rewards.*", _type="list"))
    return waiting + int(client.hlen("unacked"))


def _stranded(redis_url: str, settle_s: float) -> int:
    """What is left once the last acknowledgements land (a task is acked just after its result)."""
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + settle_s
        while (left := queued_messages(client)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left
    finally:
        client.close()


@pytest.fixture(scope="session")
def _fault_report_path() -> Path | None:
    # Read before the autouse fixture of tests/conftest.py clears REWARDQ_* for each test.
    path = os.environ.get("REWARDQ_FAULT_REPORT")
    return Path(path) if path else None


@pytest.fixture
def delivery_check(_fault_report_path: Path | None) -> DeliveryCheck:
    return DeliveryCheck(_fault_report_path)


def client_settings(broker_url: str, database_url: str, rewards: FaultRewards, **overrides: Any) -> Settings:
    """A producer's settings for a scenario: small chunks (many tasks per batch), the suite's rewards."""
    values: dict[str, Any] = {"chunk_size": 2, "timeout": 120.0, **overrides}
    return Settings.from_env(
        {}, broker_url=broker_url, database_url=database_url, rewards=rewards.config, **values
    )


def samples(count: int, tag: str) -> list[dict[str, str]]:
    """``count`` distinct samples whose ids carry ``tag``."""
    return [
        {"prompt": "Say something.", "completion": f"{tag} answer {i}", "id": f"{tag}-{i}"}
        for i in range(count)
    ]
