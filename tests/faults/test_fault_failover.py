"""Scenario: the Redis primary is killed (SIGKILL) under load, with a replica and three sentinels of the
test's own: Sentinel promotes the replica, the worker, the producers and the result backend follow it
(``sentinel://`` URLs), and every submitted sample comes back once (docs/reliability.md, "Broker
failover"). And a sentinel and master over TLS, reached by plain clients and by Celery."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from rewardq import RewardClient, Settings
from rewardq.broker import make_app
from rewardq.connection import check_connection
from rewardq.serving import redis_client
from rewardq.wire.errors import BrokerUnavailable
from tests.conftest import RedisServer, WorkerProcess, free_port, unavailable
from tests.faults.conftest import (
    DeliveryCheck,
    FaultRewards,
    Submitted,
    client_settings,
    kill9,
    samples,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

MASTER = "rewardq-test"
PASSWORD = "master-secret"
SENTINEL_PASSWORD = "sentinel-secret"
REPLICATION_USER = "replication"
REWARDS = ["slow", "format"]
PRODUCERS = 2
DOWN_AFTER_MS = 1000  # how long a silent primary takes to be judged down by the sentinels
BURST = 96  # samples submitted while the replica is stopped: 48 tasks, more than the worker takes in lag_s
UNREPLICATED = "rewardq-test:written-while-the-replica-was-stopped"
FAST_RECOVERY = {"REWARDQ_VISIBILITY_TIMEOUT": "6", "REWARDQ_HEARTBEAT": "1"}


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(["redis-server", *args], stdout=out, stderr=subprocess.STDOUT)


def _wait(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if check():
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s")


class SentinelRedis:
    """A primary, a replica of it and three sentinels (``redis-server --sentinel``, quorum 2), on free
    ports under ``workdir``; the Redis servers require PASSWORD, the sentinels SENTINEL_PASSWORD."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = {"primary": free_port(), "replica": free_port()}
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The broker URL the clients are given: the sentinels, with the master's password."""
        return ";".join(f"sentinel://:{PASSWORD}@127.0.0.1:{port}/0" for port in self.sentinel_ports)

    def redis_url(self, role: str) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.ports[role]}/0"

    def env(self) -> dict[str, str]:
        return {"REWARDQ_SENTINEL_MASTER": MASTER, "REWARDQ_SENTINEL_PASSWORD": SENTINEL_PASSWORD}

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for role, port in self.ports.items():
            args = [
                *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                *("--dir", str(self.workdir), "--dbfilename", f"{role}.rdb"),
                *("--requirepass", PASSWORD, "--masteruser", REPLICATION_USER, "--masterauth", PASSWORD),
                *("--user", REPLICATION_USER, "on", f">{PASSWORD}", "+psync", "+replconf", "+ping"),
            ]
            if role == "replica":
                args += ["--replicaof", "127.0.0.1", str(self.ports["primary"])]
            self.procs[role] = _start(args, self.workdir / f"{role}.log")
        replica = redis.Redis.from_url(self.redis_url("replica"))
        _wait(lambda: replica.info("replication").get("master_link_status") == "up", "replica not in sync")
        for i, port in enumerate(self.sentinel_ports):
            conf = self.workdir / f"sentinel-{i}.conf"  # a sentinel rewrites its file: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\nrequirepass {SENTINEL_PASSWORD}\n"
                f"sentinel sentinel-pass {SENTINEL_PASSWORD}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.ports['primary']} 2\n"
                f"sentinel auth-pass {MASTER} {PASSWORD}\n"
                f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
            )
            self.procs[f"sentinel-{i}"] = _start(
                [str(conf), "--sentinel"], self.workdir / f"sentinel-{i}.log"
            )
        for port in self.sentinel_ports:  # each knows the replica and the two other sentinels
            sentinel = redis.Redis(port=port, password=SENTINEL_PASSWORD)
            _wait(
                lambda s=sentinel: bool(s.sentinel_slaves(MASTER)) and len(s.sentinel_sentinels(MASTER)) == 2,
                f"sentinel on {port} has not found the replica and the other sentinels",
            )

    def master_port(self) -> int:
        """The port the sentinels name as the master now."""
        sentinel = redis.Redis(port=self.sentinel_ports[0], password=SENTINEL_PASSWORD)
        return int(sentinel.sentinel_get_master_addr_by_name(MASTER)[1])

    def cut_replication(self) -> None:
        """Cut the replica's link and keep it from coming back (its user is turned off on the primary):
        what the primary acknowledges from now on is not replicated, as with an asynchronous replica
        that fell behind."""
        primary = redis.Redis.from_url(self.redis_url("primary"))
        primary.acl_setuser(REPLICATION_USER, enabled=False)
        primary.client_kill_filter(_type="replica")

    def kill_primary(self) -> float:
        """SIGKILL the primary; returns when (``time.monotonic()``)."""
        kill9(self.procs["primary"].pid)
        killed_at = time.monotonic()
        self.procs["primary"].wait()
        return killed_at

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


@pytest.fixture
def sentinel_redis(tmp_path: Path) -> Iterator[SentinelRedis]:
    try:
        subprocess.run(["redis-server", "--version"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        unavailable("redis-server is not installed")
    servers = SentinelRedis(tmp_path / "sentinel")
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


class Producer(threading.Thread):
    """Submits batches one after another until told to stop; keeps each batch, when it was submitted
    and when its result came back."""

    def __init__(self, name: str, client: RewardClient) -> None:
        super().__init__(name=name, daemon=True)
        self.client = client
        self.submitted: list[tuple[Submitted, float, float]] = []
        self.refusals: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        count = 0
        while not self.stopping.is_set():
            count += 1
            sent = time.monotonic()
            try:
                handle = self.client.submit(samples(6, f"{self.name}-{count}"), REWARDS, run_id="failover")
            except Exception as e:  # the broker could not take it: a refusal, not a submitted batch
                self.refusals.append(f"{type(e).__name__}: {e}")
                continue
            result = handle.get(timeout=120)
            self.submitted.append((Submitted(handle.batch_id, 6, REWARDS, result), sent, time.monotonic()))


@pytest.mark.parametrize(("lag_s", "case"), [(0.0, "in sync"), (1.5, "replica 1.5 s behind")])
def test_primary_killed_under_load_fails_over(
    lag_s: float,
    case: str,
    sentinel_redis: SentinelRedis,
    sqlite_url: str,
    fault_rewards: FaultRewards,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="rewardq.resend")
    worker = start_worker(
        sentinel_redis.url,
        sqlite_url,
        *("--config", str(fault_rewards.config), "--rewards", "slow,format", "--pool", "prefork"),
        *("--concurrency", "2"),
        env=fault_rewards.env(delay=0.2, **FAST_RECOVERY, **sentinel_redis.env()),
    )
    settings = client_settings(
        sentinel_redis.url,
        sqlite_url,
        fault_rewards,
        visibility_timeout=6,
        heartbeat=1.0,
        resend_after=5.0,
        sentinel_master=MASTER,
        sentinel_password=SENTINEL_PASSWORD,
    )
    clients = [RewardClient(settings) for _ in range(PRODUCERS)]
    producers = [Producer(f"p{i}", client) for i, client in enumerate(clients)]
    for producer in producers:
        producer.start()
    _wait(lambda: all(len(p.submitted) >= 2 for p in producers), "no batches before the kill", 60)

    burst = None
    if lag_s:  # the replica falls behind while a burst of tasks is queued on the primary alone
        sentinel_redis.cut_replication()
        redis.Redis.from_url(sentinel_redis.redis_url("primary")).set(UNREPLICATED, 1)
        burster = RewardClient(settings)
        burst = burster.submit(samples(BURST, "burst"), ["slow"], run_id="failover")
        time.sleep(lag_s)
    killed_at = sentinel_redis.kill_primary()
    _wait(lambda: sentinel_redis.master_port() == sentinel_redis.ports["replica"], "no promotion", 60)
    promoted_s = time.monotonic() - killed_at
    # load goes on until two batches of each producer were submitted after the kill and came back
    _wait(
        lambda: all(sum(sent > killed_at for _, sent, _ in p.submitted) >= 2 for p in producers),
        "no recovery",
        90,
    )
    for producer in producers:
        producer.stopping.set()
    for producer in producers:
        producer.join(timeout=150)
    after_kill = [done for p in producers for _, sent, done in p.submitted if sent > killed_at]
    recovery_s = min(after_kill) - killed_at
    before = sorted(done - sent for p in producers for _, sent, done in p.submitted if done < killed_at)

    # a plain client built from the same settings reaches the new master too, and so does `rewardq status`
    assert redis_client(settings).info("server")["tcp_port"] == sentinel_redis.ports["replica"]
    status = subprocess.run(
        [str(Path(sys.executable).with_name("rewardq")), "status", "--json"],
        env={**os.environ, "REWARDQ_BROKER_URL": sentinel_redis.url, **sentinel_redis.env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert len(json.loads(status.stdout)["workers"]) == 1
    submitted = [s for p in producers for s, _, _ in p.submitted]
    if burst is not None:
        submitted.append(Submitted(burst.batch_id, BURST, ["slow"], burst.get(timeout=120)))
        burster.close()
        assert not redis_client(settings).exists(UNREPLICATED)  # the new master lacks what was not replicated
    counts = delivery_check(
        f"Redis primary killed, Sentinel fails over ({case})",
        submitted,
        database_url=sqlite_url,
        redis_url=sentinel_redis.redis_url("replica"),
        trials=1,
        recovery_s=round(recovery_s, 1),
    )
    for client in clients:
        client.close()
    resent = sum("sending it again" in r.getMessage() for r in caplog.records)
    print(
        f"failover ({case}): promoted in {promoted_s:.1f}s,"
        f" first batch sent after the kill done in {recovery_s:.1f}s;"
        f" {counts.expected} expected, {counts.lost} lost, {counts.duplicated} duplicated,"
        f" {counts.stranded} stranded; {len(submitted)} batches; {resent} chunks re-sent by the client;"
        f" a batch took {before[len(before) // 2]:.1f}s before the kill (median)"
    )
    assert not any(p.is_alive() for p in producers)
    assert worker.proc.poll() is None, worker.output()
    log = worker.output()
    assert log.count("Connected to ") >= 2, log  # connected, then reconnected to the new master
    assert PASSWORD not in log and SENTINEL_PASSWORD not in log
    assert counts.clean, counts.problems
    refusals = [r for p in producers for r in p.refusals]
    assert refusals == [], refusals
    if lag_s:  # tasks queued on the primary alone were lost in the failover and sent again
        assert resent > 0


def test_sentinel_and_master_over_tls(tmp_path: Path) -> None:
    """With REWARDQ_SENTINEL_TLS, the sentinels and the master they name are reached over TLS, verified
    with REWARDQ_REDIS_CA_CERTS: by plain clients and by Celery's broker and result backend alike."""
    master = RedisServer(tmp_path / "tls-master", password=PASSWORD, tls=True)
    master.start()
    port = free_port()
    conf = tmp_path / "sentinel-tls.conf"
    conf.write_text(
        f"port 0\ntls-port {port}\nbind 127.0.0.1\ndir {tmp_path}\ntls-replication yes\n"
        f"tls-cert-file {master.ca_file}\ntls-key-file {master.ca_file.with_name('key.pem')}\n"
        f"tls-ca-cert-file {master.ca_file}\ntls-auth-clients no\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 1\nsentinel auth-pass {MASTER} {PASSWORD}\n"
    )
    sentinel = _start([str(conf), "--sentinel"], tmp_path / "sentinel-tls.log")
    try:
        probe = redis.Redis("127.0.0.1", port, ssl=True, ssl_ca_certs=str(master.ca_file))
        _wait(lambda: bool(probe.sentinel_master(MASTER)), "the TLS sentinel does not know its master")
        url = f"sentinel://:{PASSWORD}@127.0.0.1:{port}/0"
        settings = Settings.from_env(
            {}, broker_url=url, sentinel_master=MASTER, sentinel_tls=True, redis_ca_certs=master.ca_file
        )
        assert redis_client(settings).ping()  # the master, which serves TLS only
        check_connection(make_app(settings))  # Celery's broker and result backend
        with pytest.raises(BrokerUnavailable):
            check_connection(make_app(settings.with_(sentinel_tls=False)), timeout=2.0)
    finally:
        sentinel.terminate()
        sentinel.wait(timeout=10)
        master.stop()
