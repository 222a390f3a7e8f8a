"""The code reward's Sandbox Fusion backend against a fake Sandbox Fusion server (a real HTTP server on a
free port that runs each program with the test's own interpreter): values, the harness over HTTP, retries
of 5xx, the bound on requests in flight, a SandboxError, and a server that does not answer at start."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest

from rewardq import Settings
from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.code.reward import CodeReward
from tests.fake_openai import Behaviour, FakeOpenAI, Reply, Request, failing

TESTS = {"inputs": ["1 2\n", "3 4\n", "5 6\n"], "outputs": ["3\n", "7\n", "11\n"]}
RIGHT = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
WRONG = "```python\nprint(3)\n```"


def fusion(latency: float = 0.0) -> Behaviour:
    """Sandbox Fusion's ``/run_code``: run the Python code on stdin within run_timeout; ``/v1/ping``."""

    async def behave(request: Request) -> Reply:
        if request.method == "GET" and request.path == "/v1/ping":
            return Reply(200, "pong")
        body = request.body
        if "SANDBOX_BREAKS" in body["code"]:
            return Reply(200, {"status": "SandboxError", "message": "no runner", "run_result": None})
        await asyncio.sleep(latency)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", body["code"], stdin=-1, stdout=-1, stderr=-1
        )
        try:
            out, err = await asyncio.wait_for(
                process.communicate(body["stdin"].encode()), body["run_timeout"]
            )
        except TimeoutError:
            process.kill()
            await process.wait()
            run: dict[str, object] = {
                "status": "TimeLimitExceeded",
                "return_code": None,
                "stdout": "",
                "stderr": "",
            }
        else:
            run = {
                "status": "Finished",
                "return_code": process.returncode,
                "stdout": out.decode(),
                "stderr": err.decode(),
            }
        status = "Success" if run["return_code"] == 0 else "Failed"
        return Reply(200, {"status": status, "message": "", "compile_result": None, "run_result": run})

    return behave


def failing_runs(times: int, status: int) -> Behaviour:
    """Answer the first ``times`` attempts of each ``/run_code`` request with ``status``; ping answers."""
    runs, pings = failing(times, status, fusion()), fusion()
    return lambda request: pings(request) if request.path == "/v1/ping" else runs(request)


@pytest.fixture
def resources() -> Iterator[WorkerResources]:
    resources = WorkerResources(Settings.from_env({}))
    yield resources
    resources.close()


def _reward(server: FakeOpenAI, resources: WorkerResources, **options: object) -> CodeReward:
    url = f"http://127.0.0.1:{server.port}"
    reward = CodeReward("code", CodeReward.Options(backend="sandbox_fusion", url=url, **options))
    reward.setup(resources)
    return reward


def _sample(completion: str, tests: object = TESTS) -> Sample:
    return Sample(completion=completion, columns={"tests": tests})


def test_values_and_per_case_verdicts_come_from_the_servers_runs(resources: WorkerResources) -> None:
    with FakeOpenAI(fusion()) as server:
        reward = _reward(server, resources, time_limit=2)
        call = {"fn_name": "add", "inputs": [[1, 2], [2, 2]], "outputs": [[3], [5]]}
        slow = "```python\nimport time\ntime.sleep(30)\n```"
        right, wrong, partial, timeout = reward.score(
            [_sample(RIGHT), _sample(WRONG), _sample("def add(a, b):\n    return a + b", call), _sample(slow)]
        )
        reward.close()
    assert (right.status, right.value) == ("ok", 1.0)
    assert (wrong.value, partial.value, timeout.value) == (pytest.approx(1 / 3), 0.5, 0.0)
    assert wrong.raw is not None and '"cases":["passed","wrong_answer","wrong_answer"]' in wrong.raw
    assert timeout.raw is not None and '"verdict":"time_limit"' in timeout.raw
    assert {r.path for r in server.requests} == {"/v1/ping", "/run_code"}


def test_5xx_replies_are_retried(resources: WorkerResources) -> None:
    with FakeOpenAI(failing_runs(2, 503)) as server:
        reward = _reward(server, resources, max_retries=3)
        [score] = reward.score([_sample(RIGHT, {"inputs": ["1 1\n"], "outputs": ["2\n"]})])
        reward.close()
    runs = [r for r in server.requests if r.path == "/run_code"]
    assert (score.status, score.value, len(runs)) == ("ok", 1.0, 3)


def test_retries_run_out_into_an_error_not_a_zero(resources: WorkerResources) -> None:
    with FakeOpenAI(failing_runs(5, 503)) as server:
        reward = _reward(server, resources, max_retries=1)
        [score] = reward.score([_sample(RIGHT, {"inputs": ["1 1\n"], "outputs": ["2\n"]})])
        reward.close()
    assert score.status == "error" and score.error is not None and "http_503" in score.error


def test_requests_in_flight_stay_within_parallel(resources: WorkerResources) -> None:
    with FakeOpenAI(fusion(latency=0.2)) as server:
        reward = _reward(server, resources, parallel=2)
        scores = reward.score([_sample(RIGHT)] * 3)
        reward.close()
    assert [s.value for s in scores] == [1.0, 1.0, 1.0]
    assert server.peak_in_flight == 2


def test_a_sandbox_error_is_an_error(resources: WorkerResources) -> None:
    with FakeOpenAI(fusion()) as server:
        reward = _reward(server, resources)
        [broken, fine] = reward.score([_sample("# SANDBOX_BREAKS\nprint(3)"), _sample(RIGHT)])
        reward.close()
    assert broken.status == "error" and broken.error is not None and "SandboxError: no runner" in broken.error
    assert fine.value == 1.0


def test_a_server_that_does_not_answer_stops_the_start(resources: WorkerResources) -> None:
    with FakeOpenAI(fusion()) as server:
        port = server.port
    reward = CodeReward("code", CodeReward.Options(backend="sandbox_fusion", url=f"http://127.0.0.1:{port}"))
    with pytest.raises(
        RewardSetupError, match=r"Sandbox Fusion server at http://127\.0\.0\.1:\d+ does not answer"
    ):
        reward.setup(resources)
    reward.close()


def test_verls_endpoint_url_is_accepted(resources: WorkerResources) -> None:
    with FakeOpenAI(fusion()) as server:
        reward = CodeReward(
            "code",
            CodeReward.Options(backend="sandbox_fusion", url=f"http://127.0.0.1:{server.port}/run_code"),
        )
        reward.setup(resources)
        [score] = reward.score([_sample(RIGHT)])
        reward.close()
    assert score.value == 1.0
