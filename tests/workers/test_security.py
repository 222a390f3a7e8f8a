"""Security against real workers: JSON only (a pickled message is refused, never unpickled), Redis with
a password and an ACL user, secrets kept out of logs, the audit store and command output, and code
loaded only from the workers' configuration, never from a message."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Exchange, Producer

from rewardq import RewardClient, Settings
from rewardq.storage import upgrade
from rewardq.wire.schema import TASK_NAME, queue_for
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.task import InvalidTask, score_payload
from tests.conftest import RedisServer, WorkerProcess
from tests.workers.test_cli import rewardq
from tests.workers.test_dlq import dlq_entries

GOOD = {"prompt": "q", "completion": "<think>a</think>\n<answer>b</answer>"}


class _Touch:
    """Unpickling this creates ``marker``: the proof that a message was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _score_one(url: str, run_id: str) -> Any:
    with RewardClient(Settings.from_env({}, broker_url=url, timeout=120)) as client:
        return client.score([GOOD], "format", run_id=run_id)


@pytest.mark.slow
def test_a_pickled_message_is_refused_and_the_worker_keeps_scoring(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
    marker = tmp_path / "unpickled"
    task_id = str(uuid.uuid4())
    with Connection(redis_server.url) as conn:
        Producer(conn).publish(
            ((_Touch(marker),), {}, {}),
            serializer="pickle",
            exchange=Exchange(""),
            routing_key=queue_for("format"),
            headers={"lang": "py", "task": TASK_NAME, "id": task_id, "root_id": task_id, "argsrepr": "()"},
        )
    result = _score_one(redis_server.url, "after-pickle")  # FIFO: the pickled message was taken first
    assert result.statuses["format"] == ["ok"] and result.rewards["format"] == [1.0]
    assert not marker.exists(), "the pickled message was unpickled"
    log = worker.output()
    assert "ContentDisallowed" in log and "pickle" in log, log
    assert worker.proc.poll() is None
    (entry,) = dlq_entries(redis_server.url)  # recorded, with its raw body, still not unpickled
    assert entry.task_id == task_id and "ContentDisallowed" in entry.reason
    assert entry.payload["content_type"] == "application/x-python-serialize"
    assert entry.payload["raw_bytes"] > 0 and not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("user", [None, "trainer"], ids=["requirepass", "acl-user"])
def test_a_password_protected_redis_serves_and_no_secret_leaks(
    tmp_path: Path, sqlite_url: str, start_worker: Callable[..., WorkerProcess], user: str | None
) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    audit_key = f"key-{uuid.uuid4().hex}"
    server = RedisServer(tmp_path / "secure-redis", password=password, user=user)
    server.start()
    try:
        env = {"REWARDQ_AUDIT_KEY": audit_key}
        worker = start_worker(server.url, sqlite_url, "--rewards", "format", "--pool", "solo", env=env)
        result = _score_one(server.url, "secure")
        assert result.statuses["format"] == ["ok"]
        log = worker.output()
        assert f"redis://{user or ''}:**@127.0.0.1:{server.port}/0" in log  # Celery's banner, masked
        cli_env = {"REWARDQ_BROKER_URL": server.url, "REWARDQ_DATABASE_URL": sqlite_url, **env}
        outputs = [
            rewardq("rewards", env=cli_env).stdout,
            rewardq("audit", "runs", "-f", "jsonl", env=cli_env).stdout,
            rewardq("audit", "scores", "secure", "-f", "csv", env=cli_env).stdout,
            rewardq("audit", "verify", "secure", env=cli_env).stdout,
        ]
        assert "secure" in outputs[1]
    finally:
        server.stop()
    audit_file = Path(sqlite_url.removeprefix("sqlite:///")).read_bytes()
    for secret in (password, audit_key):
        assert secret not in worker.output()
        assert secret.encode() not in audit_file
        assert not any(secret in out for out in outputs)


def test_code_is_loaded_from_the_workers_configuration_never_from_a_message(
    tmp_path: Path, sqlite_url: str
) -> None:
    marker = tmp_path / "imported"
    plugin = tmp_path / "evil.py"
    plugin.write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\ndef register(kinds): pass\n")
    upgrade(sqlite_url)
    runtime = WorkerRuntime(Settings.from_env({}, database_url=sqlite_url), RewardsConfig.load(None))
    base = {"batch_id": uuid.uuid4().hex, "run_id": "r", "reward": "format", "samples": [GOOD]}
    for extra in ({"plugins": [str(plugin)]}, {"kind": "function"}, {"function": "evil:register"}):
        with pytest.raises(InvalidTask, match="Extra inputs are not permitted"):
            score_payload(runtime, base | extra)
    for reward in (str(plugin), "evil:register", "../evil"):
        with pytest.raises(InvalidTask, match="reward: String should match pattern"):
            score_payload(runtime, base | {"reward": reward})
    # Columns travel to the scorers as data; nothing is loaded from them.
    columns = {"plugins": [str(plugin)], "kind": "function", "function": "evil:register"}
    result = score_payload(runtime, base | {"samples": [GOOD | {"columns": columns}]})
    assert result["statuses"] == ["ok"]
    runtime.close()
    assert not marker.exists()


@pytest.mark.slow
def test_a_tls_redis_with_a_password_serves_through_configuration(
    tmp_path: Path, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    server = RedisServer(tmp_path / "tls-redis", password="tls-pw", tls=True)
    server.start()
    try:
        ca = {"REWARDQ_REDIS_CA_CERTS": str(server.ca_file)}
        assert server.url.startswith("rediss://")
        start_worker(server.url, sqlite_url, "--rewards", "format", "--pool", "solo", env=ca)
        settings = Settings.from_env(ca, broker_url=server.url, timeout=120)
        with RewardClient(settings) as client:
            result = client.score([GOOD], "format", run_id="tls")
        assert result.statuses["format"] == ["ok"]
        # Without the CA the server's certificate is not trusted: refused, not silently unverified.
        (tmp_path / "x.jsonl").write_text('{"completion": "a"}\n')
        proc = rewardq(
            "score",
            str(tmp_path / "x.jsonl"),
            "-r",
            "format",
            "-o",
            str(tmp_path / "o.jsonl"),
            "--run-id",
            "r",
            env={"REWARDQ_BROKER_URL": server.url},
            check=False,
        )
    finally:
        server.stop()
    assert proc.returncode == 2 and "certificate verify failed" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_database_password_stays_out_of_the_worker_log(
    redis_server: RedisServer, postgres_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    import sqlalchemy

    secret = f"dbpw-{uuid.uuid4().hex}"  # the test server trusts local connections: any password does
    url = sqlalchemy.engine.make_url(postgres_url).set(password=secret).render_as_string(hide_password=False)
    worker = start_worker(
        redis_server.url, url, "--rewards", "format", "--pool", "solo", "--loglevel", "DEBUG"
    )
    assert _score_one(redis_server.url, "pg").statuses["format"] == ["ok"]
    assert secret not in worker.output()
    assert secret not in rewardq("audit", "runs", env={"REWARDQ_DATABASE_URL": url}).stdout
