"""Shared fixtures: real services (PostgreSQL, redis-server on a free port), isolated settings.

Real-service fixtures skip on a laptop without the service and fail under CI (``CI=true``).
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

pytest_plugins = ["tests.vllm_server", "tests.verl_site"]  # vllm_*_server fixtures, verl_site

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_ADMIN_URL = os.environ.get(
    "REWARDQ_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def unavailable(reason: str) -> None:
    """Skip on a laptop, fail in CI: a missing service there is a broken CI, not a skip."""
    if IN_CI:
        pytest.fail(f"required service unavailable in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's REWARDQ_* settings or writes to their data dir."""
    for var in list(os.environ):
        if var.startswith("REWARDQ_") and var != "REWARDQ_TEST_POSTGRES_URL":
            monkeypatch.delenv(var)
    monkeypatch.setenv("REWARDQ_HOME", str(tmp_path / "rewardq-home"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the real PostgreSQL server, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"rewardq_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as e:
        admin.dispose()
        unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL} unavailable: {e}")
    url = sqlalchemy.engine.make_url(POSTGRES_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs against SQLite and the real PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


def self_signed_certificate(cert: Path, key: Path) -> None:
    """A self-signed certificate for 127.0.0.1 and its key (openssl), at ``cert`` and ``key``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        unavailable("openssl is not installed")
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key)]
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [str(openssl), *request, "-out", str(cert), *subject],
        check=True,
        capture_output=True,
    )


class RedisServer:
    """A redis-server of the test's own on a free port (never the shared one).

    With ``password`` it requires it (``requirepass``); with ``user`` too, that password belongs to an
    ACL user of that name (all commands, all keys and channels) and the default user is off. With
    ``tls`` it speaks only TLS (``rediss://``) with a self-signed certificate, ``ca_file``. With
    ``appendonly`` it keeps an append-only file in ``workdir``, so that ``stop`` then ``start`` (on the
    same port) restarts it with its data, as a production Redis restarts. ``bind``: the addresses it
    listens on (the first one is ``url``'s).
    """

    def __init__(
        self,
        workdir: Path,
        password: str | None = None,
        user: str | None = None,
        tls: bool = False,
        appendonly: bool = False,
        bind: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:
        self.port = free_port()
        self.bind = bind
        self.workdir = workdir
        self.password = password
        self.user = user
        self.tls = tls
        self.appendonly = appendonly
        self.ca_file = workdir / "tls" / "cert.pem"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_as(self.user, self.password)

    def url_as(self, user: str | None, password: str | None) -> str:
        """The server's URL with these credentials (wrong ones, for tests that expect a refusal)."""
        auth = f"{user or ''}:{password}@" if password is not None else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{self.bind[0]}:{self.port}/0"

    def _tls_args(self) -> list[str]:
        """A self-signed certificate for 127.0.0.1 (openssl), and the options that serve only TLS."""
        if not self.tls:
            return ["--port", str(self.port)]
        key = self.ca_file.with_name("key.pem")
        self.ca_file.parent.mkdir(parents=True, exist_ok=True)
        self_signed_certificate(self.ca_file, key)
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-auth-clients",
            "no",
            "--tls-cert-file",
            str(self.ca_file),
            "--tls-key-file",
            str(key),
        ]

    def _auth_args(self) -> list[str]:
        if self.password is None:
            return []
        if self.user is None:
            return ["--requirepass", self.password]
        return [
            "--user",
            "default",
            "off",
            "--user",
            self.user,
            "on",
            f">{self.password}",
            "~*",
            "&*",
            "+@all",
        ]

    def _ping(self) -> bytes:
        ping = b"PING\r\n"
        if self.password is not None:
            auth = [b"AUTH", *([self.user.encode()] if self.user else []), self.password.encode()]
            ping = b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in auth)
            ping = b"*%d\r\n" % len(auth) + ping + b"PING\r\n"
        return ping

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=0.2)
        if not self.tls:
            return sock
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(binary),
                *self._tls_args(),
                "--bind",
                *self.bind,
                # off the loopback (private test links only), a server without a password refuses clients
                "--protected-mode",
                "yes" if self.bind == ("127.0.0.1",) else "no",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--dir",
                str(self.workdir),
                "--maxmemory-policy",
                "noeviction",
                *self._auth_args(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with self._connect() as s:
                    s.sendall(self._ping())
                    reply = b""
                    while b"\r\n" not in reply.removeprefix(b"+OK\r\n") and (chunk := s.recv(64)):
                        reply += chunk
                    if reply.removeprefix(b"+OK\r\n").startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        # Celery's AsyncResult.__del__ unsubscribes through its backend even when it never subscribed;
        # one collected after its redis-server stopped retries the connection for ~20 s. Collect the
        # test's leftovers (results held in reference cycles, e.g. by a traceback) while it is up.
        gc.collect()
        server.stop()


class WorkerProcess:
    """``rewardq worker`` in a process of its own, against a test's broker and audit store (``prefix``:
    a command that execs it, e.g. ``ip netns exec NS``)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, prefix: Sequence[str] = ()) -> None:
        self.args = args
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*prefix, str(Path(sys.executable).with_name("rewardq")), "worker", *args],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
            if b" ready." in self.log.read_bytes():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``start_worker(broker_url, database_url, "--rewards", "format", ...)`` → a ready worker
    (``prefix=``: as WorkerProcess's)."""
    workers: list[WorkerProcess] = []

    def start(
        broker_url: str,
        database_url: str,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> WorkerProcess:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
        full_env.update(
            {
                "REWARDQ_BROKER_URL": broker_url,
                "REWARDQ_DATABASE_URL": database_url,
                "REWARDQ_HOME": str(tmp_path / "rewardq-home"),
                **(env or {}),
            }
        )
        worker = WorkerProcess(list(args), full_env, tmp_path / f"worker-{len(workers)}.log", prefix)
        workers.append(worker)
        worker.wait_ready()
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()
