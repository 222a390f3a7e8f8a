"""What a benchmark starts for itself: a private redis-server, a temporary PostgreSQL database, workers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from rewardq import Settings
from rewardq.broker import make_app

POSTGRES_ADMIN_URL = os.environ.get(
    "REWARDQ_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REWARDQ = str(Path(sys.executable).with_name("rewardq"))


def checkout_rewardq(checkout: str) -> str:
    """The ``rewardq`` executable of another checkout (its ``.venv``), for benches run side by side."""
    path = Path(checkout) / ".venv" / "bin" / "rewardq"
    if not path.exists():
        raise SystemExit(f"{path} not found: give a checkout with its own .venv and rewardq installed")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                d,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                    break
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"rewardq_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        yield f"sqlite:///{d}/audit.db"


@contextlib.contextmanager
def workers(
    count: int, broker: str, database: str, *args: str, rewardq: str = REWARDQ
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` worker processes, each ``rewardq worker *args`` (``rewardq``: the executable, e.g. another
    checkout's), answering pings before the block runs; the block gets their processes (the workers' main
    processes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env.update({"REWARDQ_BROKER_URL": broker, "REWARDQ_DATABASE_URL": database})
    logs = [tempfile.NamedTemporaryFile(suffix=".log", delete=False) for _ in range(count)]  # noqa: SIM115
    app = make_app(Settings.from_env({}, broker_url=broker))
    procs = [
        subprocess.Popen(
            [rewardq, "worker", *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        for log in logs
    ]
    try:
        deadline = time.monotonic() + 60
        while len(app.control.ping(timeout=0.5)) < count:  # works at any --loglevel
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError("\n".join(Path(log.name).read_text() for log in logs))
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
        for proc in procs:
            proc.wait(30)
        for log in logs:
            os.unlink(log.name)
        app.close()
