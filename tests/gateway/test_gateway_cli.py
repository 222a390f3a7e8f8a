"""``rewardq serve`` as a process (HTTPS through uvicorn's options, request ids in its log and answers,
no key in any log line), ``rewardq gateway-key``, and the gateway's config file."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from rewardq.gateway.config import GatewayConfig, hash_key
from rewardq.wire.errors import ConfigError
from tests.conftest import RedisServer, WorkerProcess, free_port, self_signed_certificate
from tests.gateway.conftest import Keys, path_of, rows

REWARDQ = str(Path(sys.executable).with_name("rewardq"))


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    self_signed_certificate(cert, key)
    return cert, key


def _config_text(keys: Keys) -> str:
    return f"""
[gateway]
max_timeout = 120

[[gateway.keys]]
name = "team-a"
hash = "{hash_key(keys.a)}"
runs = ["team-a-"]
rewards = ["format"]
"""


@pytest.fixture
def served_process(
    tmp_path: Path, keys: Keys, redis_server: RedisServer, sqlite_url: str
) -> Iterator[Callable[..., tuple[str, Path]]]:
    """Factory: ``rewardq serve`` in a process of its own → its base URL and its log file."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> tuple[str, Path]:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
        env |= {"REWARDQ_BROKER_URL": redis_server.url, "REWARDQ_DATABASE_URL": sqlite_url}
        config = path_of(tmp_path, "gateway.toml", _config_text(keys))
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    REWARDQ,
                    "--log-level",
                    "INFO",
                    "serve",
                    "--config",
                    str(config),
                    "--port",
                    str(port),
                    *flags,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        while b"Uvicorn running" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        scheme = "https" if "--ssl-certfile" in flags else "http"
        return f"{scheme}://127.0.0.1:{port}", log

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.slow
def test_serve_speaks_tls_names_requests_and_logs_no_key(
    served_process: Callable[..., tuple[str, Path]],
    keys: Keys,
    tmp_path: Path,
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
    cert, key = _certificate(tmp_path)
    url, log = served_process("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(cert)), timeout=60) as http:
        wrong = http.get("/v1/rewards", headers={"Authorization": "Bearer not-the-key-" + keys.a[::-1]})
        scored = http.post(
            "/v1/score",
            json={"run_id": "team-a-tls", "rewards": ["format"], "samples": rows(2)},
            headers={"Authorization": f"Bearer {keys.a}", "X-Request-ID": "trainer-42"},
        )
    with pytest.raises(httpx.HTTPError), httpx.Client(base_url=url.replace("https", "http")) as plain:
        plain.get("/v1/health")
    assert wrong.status_code == 401
    assert scored.status_code == 200, scored.text
    assert scored.headers["X-Request-ID"] == "trainer-42"
    text = log.read_text()
    assert "[trainer-42]" in text and "'/v1/score' -> 200" in text and "(key team-a)" in text
    assert f"[{wrong.headers['X-Request-ID']}]" in text and "-> 401" in text
    assert keys.a not in text and keys.a[::-1] not in text


def test_gateway_key_prints_a_key_and_the_hash_the_config_keeps() -> None:
    made = subprocess.run([REWARDQ, "gateway-key"], capture_output=True, text=True, check=True)
    key, line = made.stdout.splitlines()
    assert line == f'hash = "{hash_key(key)}"'
    assert key not in made.stderr
    given = "k" * 40
    hashed = subprocess.run(
        [REWARDQ, "gateway-key", "--stdin"], input=given, capture_output=True, text=True, check=True
    )
    assert hashed.stdout == f'hash = "{hash_key(given)}"\n'
    short = subprocess.run([REWARDQ, "gateway-key", "--stdin"], input="short", capture_output=True, text=True)
    assert short.returncode != 0 and "at least 32 characters" in short.stderr


def test_the_config_file_is_checked_field_by_field(tmp_path: Path, keys: Keys) -> None:
    loaded = GatewayConfig.load(
        path_of(tmp_path, "ok.toml", _config_text(keys) + "[gateway.protocols.x]\na = 1\n")
    )
    assert loaded.keys[0].name == "team-a" and loaded.protocols == {"x": {"a": 1}}
    plain = _config_text(keys).replace(hash_key(keys.a), keys.a)  # the key itself where its hash belongs
    with pytest.raises(ConfigError, match=r"gateway\.keys\.0\.hash: String should match pattern") as e:
        GatewayConfig.load(path_of(tmp_path, "plain.toml", plain))
    assert keys.a not in str(e.value)
    twice = _config_text(keys) + _config_text(keys).split("\n", 4)[4]
    with pytest.raises(ConfigError, match="two keys share the name team-a"):
        GatewayConfig.load(path_of(tmp_path, "twice.toml", twice))
    with pytest.raises(ConfigError, match="tls_certfile and tls_keyfile go together"):
        GatewayConfig.load(path_of(tmp_path, "tls.toml", '[gateway]\ntls_certfile = "c.pem"\n'))
