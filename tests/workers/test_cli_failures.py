"""Every failure of the ``rewardq`` command line is one line naming the cause, secrets masked; a
traceback only with --debug. Run as a user runs it (subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import RedisServer
from tests.workers.test_cli import rewardq, write_jsonl

SECRET = "hunter2-s3cret"


def fails(*args: str, env: dict[str, str] | None = None) -> str:
    proc = rewardq(*args, env=env, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and SECRET not in proc.stderr + proc.stdout
    return proc.stderr.strip()


def score(source: Path, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    out = str(tmp_path / "out.jsonl")
    return fails("score", str(source), "-r", "format", "-o", out, "--run-id", "r", "--no-progress", env=env)


def test_a_missing_file_or_an_empty_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert score(missing, tmp_path) == f"error: {missing}: no such file or directory"
    (tmp_path / "dir").mkdir()
    message = score(tmp_path / "dir", tmp_path)
    assert (
        message.startswith(f"error: {tmp_path / 'dir'}: 1 invalid input problem")
        and "files in this" in message
    )


def test_an_empty_file_and_deep_json_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert score(empty, tmp_path).startswith(f"error: {empty}: 1 invalid input problem")
    assert "the file holds no records" in score(empty, tmp_path)
    deep = tmp_path / "deep.jsonl"
    deep.write_text(json.dumps({"completion": "a", "x": "@"}).replace('"@"', "[" * 300 + "]" * 300) + "\n")
    assert "line 1: nested deeper than 255 levels" in score(deep, tmp_path)


def test_an_unsupported_or_unreachable_database_is_one_line() -> None:
    message = fails("audit", "runs", env={"REWARDQ_DATABASE_URL": f"mysql://u:{SECRET}@127.0.0.1/x"})
    assert message.startswith("error: unsupported audit database 'mysql://u:***@127.0.0.1/x'")
    message = fails("audit", "runs", env={"REWARDQ_DATABASE_URL": f"postgresql://u:{SECRET}@127.0.0.1:1/x"})
    assert message.startswith("error: the audit store (REWARDQ_DATABASE_URL) unreachable: connection failed")
    assert "\n" not in message


@pytest.mark.slow
def test_an_unreachable_or_wrong_password_redis_fails_at_once(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"completion": "a"}])
    server = RedisServer(tmp_path / "redis", password="right-password")
    server.start()
    try:
        env = {"REWARDQ_BROKER_URL": server.url_as(None, SECRET), "REWARDQ_TIMEOUT": "600"}
        message = score(source, tmp_path, env)
        assert message == (
            f"error: cannot connect to the broker redis://:**@127.0.0.1:{server.port}/0: "
            "invalid username-password pair or user is disabled."
        )
        env = {"REWARDQ_BROKER_URL": server.url, "REWARDQ_RESULT_BACKEND": server.url_as(None, SECRET)}
        assert "cannot connect to the result backend redis://:**@" in score(source, tmp_path, env)
    finally:
        server.stop()
    env = {"REWARDQ_BROKER_URL": f"redis://:{SECRET}@127.0.0.1:1/0"}
    assert score(source, tmp_path, env).startswith(
        "error: cannot connect to the broker redis://:**@127.0.0.1:1/0:"
    )


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = rewardq(
        "--debug",
        "score",
        str(tmp_path / "nope.jsonl"),
        "-r",
        "format",
        "-o",
        "o",
        "--run-id",
        "r",
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "FileNotFoundError" in proc.stderr
    proc = rewardq(
        "audit", "runs", env={"REWARDQ_DEBUG": "1", "REWARDQ_DATABASE_URL": "mysql://x/y"}, check=False
    )
    assert "Traceback" in proc.stderr and "UnsupportedDatabase" in proc.stderr


def test_a_worker_whose_audit_store_is_unreachable_fails_in_one_line(redis_server: RedisServer) -> None:
    env = {
        "REWARDQ_BROKER_URL": redis_server.url,
        "REWARDQ_DATABASE_URL": f"postgresql://rewardq:{SECRET}@127.0.0.1:1/audit",
    }
    message = fails("worker", "--rewards", "format", "--pool", "solo", env=env)
    assert message.startswith("error: the audit store (REWARDQ_DATABASE_URL) unreachable: connection failed")


@pytest.mark.slow
def test_a_worker_refused_by_redis_fails_in_one_line(tmp_path: Path, sqlite_url: str) -> None:
    server = RedisServer(tmp_path / "redis", password="right-password", user="trainer")
    server.start()
    try:
        env = {"REWARDQ_BROKER_URL": server.url_as("trainer", SECRET), "REWARDQ_DATABASE_URL": sqlite_url}
        message = fails("worker", "--rewards", "format", "--pool", "solo", env=env)
    finally:
        server.stop()
    assert message == (
        f"error: cannot connect to the broker redis://trainer:**@127.0.0.1:{server.port}/0: "
        "invalid username-password pair or user is disabled."
    )


def test_a_bad_chunk_size_names_the_option_and_a_bad_broker_its_scheme(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"completion": "a"}])
    out = str(tmp_path / "out.jsonl")
    chunk = fails("score", str(source), "-r", "format", "-o", out, "--run-id", "r", "--chunk-size", "-1")
    assert "Invalid value for '--chunk-size'" in chunk and "REWARDQ_CHUNK_SIZE" not in chunk
    broker = fails("status", env={"REWARDQ_BROKER_URL": f"http://u:{SECRET}@x"})
    assert broker == (
        "error: REWARDQ_BROKER_URL: the scheme 'http' is not a supported broker; rewardq status reads a "
        "Redis broker: redis://, rediss://, unix://, sentinel://"
    )
