"""The judges' HTTP policy, pinned against a real local server: which answers are retried and after how
long (Retry-After in its three forms, x-should-retry), the error messages, the key, proxies from the
environment. The policy is the openai client's; these tests hold it now that a bare client carries it."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

import pytest

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.judges.judge import JudgeReward
from rewardq.workers.rewards.judges.retries import delay, retry_after, should_retry
from tests.fake_openai import FakeOpenAI, always, failing, hang, verdict

MakeJudge = Callable[..., JudgeReward]
SAMPLE = [Sample(prompt="2+2?", completion="4")]


def gap(server: FakeOpenAI) -> float:
    first, second = server.chat_requests
    return second.received_at - first.received_at


def test_retry_after_ms_is_preferred_to_retry_after(make_judge: MakeJudge) -> None:
    headers = {"retry-after-ms": "1200", "Retry-After": "0.01"}
    with FakeOpenAI(failing(1, 503, verdict("[[5]]"), headers=headers)) as server:
        [score] = make_judge(server).score(SAMPLE)
    assert score.status == "ok" and score.meta is not None and score.meta.http_attempts == 2
    assert gap(server) >= 1.2  # the client's own first backoff is at most 0.5 s


def test_retry_after_as_an_http_date_is_honoured(make_judge: MakeJudge) -> None:
    when = email.utils.formatdate(time.time() + 3, usegmt=True)  # whole seconds: at least 2 s from now
    with FakeOpenAI(failing(1, 429, verdict("[[5]]"), headers={"Retry-After": when})) as server:
        [score] = make_judge(server).score(SAMPLE)
    assert score.status == "ok"
    assert gap(server) >= 1.5


def test_the_server_can_say_whether_to_retry(make_judge: MakeJudge) -> None:
    with FakeOpenAI(failing(1, 503, verdict("[[5]]"), headers={"x-should-retry": "false"})) as server:
        [score] = make_judge(server).score(SAMPLE)
    assert (score.error or "").startswith("http_503") and len(server.chat_requests) == 1
    with FakeOpenAI(failing(1, 400, verdict("[[5]]"), headers={"x-should-retry": "true"})) as server:
        [score] = make_judge(server).score(SAMPLE)
    assert score.status == "ok" and len(server.chat_requests) == 2


@pytest.mark.parametrize(("status", "retried"), [(408, True), (409, True), (404, False), (422, False)])
def test_request_and_lock_timeouts_are_retried_other_4xx_not(
    make_judge: MakeJudge, status: int, retried: bool
) -> None:
    with FakeOpenAI(failing(1, status, verdict("[[5]]"))) as server:
        [score] = make_judge(server, max_retries=1).score(SAMPLE)
    assert (score.status == "ok") is retried
    assert len(server.chat_requests) == (2 if retried else 1)


def test_a_retry_resends_the_same_body(make_judge: MakeJudge) -> None:
    with FakeOpenAI(failing(2, 500, verdict("[[5]]"))) as server:
        make_judge(server, seed=3).score(SAMPLE)
    bodies = [r.body for r in server.chat_requests]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]


def test_error_messages_name_the_status_and_the_servers_message(make_judge: MakeJudge) -> None:
    with FakeOpenAI(always(400, "max_tokens is too large")) as server:
        [score] = make_judge(server).score(SAMPLE)
    assert score.error == "http_400: Error code: 400 - max_tokens is too large"
    assert score.raw is not None and '"max_tokens is too large"' in score.raw


def test_a_timeout_says_how_long_and_how_many_attempts(make_judge: MakeJudge) -> None:
    with FakeOpenAI(hang()) as server:
        [score] = make_judge(server, request_timeout=0.2, max_retries=1).score(SAMPLE)
    assert score.status == "timeout"
    assert score.error == "timeout: no reply within request_timeout (0.2 s), 2 attempt(s)"


def test_no_key_sends_a_placeholder_and_a_wrong_key_fails_setup_with_a_hint(
    make_judge: MakeJudge, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAI(verdict("[[5]]")) as server:
        make_judge(server).score(SAMPLE)
    assert server.chat_requests[0].headers["authorization"] == "Bearer EMPTY"
    monkeypatch.setenv("JUDGE_KEY", "sk-wrong")
    server = FakeOpenAI(verdict("[[5]]"), api_key="sk-right")
    with server, pytest.raises(RewardSetupError) as refused:
        make_judge(server, api_key_env="JUDGE_KEY")
    assert str(refused.value) == (
        f"reward 'judge': {server.base_url}/models answered HTTP 401: Error code: 401"
        " (is the key in $JUDGE_KEY right?)"
    )


def test_proxies_come_from_the_environment_unless_no_proxy_spares_the_host(
    make_judge: MakeJudge, monkeypatch: pytest.MonkeyPatch
) -> None:
    judge_url = "http://judge.invalid:8000/v1"  # only the proxy can reach it
    with FakeOpenAI(verdict("[[5]]")) as proxy:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        [score] = make_judge(judge_url).score(SAMPLE)
        assert score.status == "ok" and score.meta is not None and score.meta.replica == judge_url
        assert proxy.chat_requests[0].path == f"{judge_url}/chat/completions"
        monkeypatch.setenv("no_proxy", "judge.invalid")
        with pytest.raises(RewardSetupError, match=r"cannot reach http://judge\.invalid:8000/v1"):
            make_judge(judge_url, max_retries=0)


def test_closing_the_worker_closes_the_judges_connections(
    make_judge: MakeJudge, resources: WorkerResources
) -> None:
    with FakeOpenAI(verdict("[[5]]", latency=0.05)) as server:
        make_judge(server, max_concurrency=4).score([Sample(completion=str(i)) for i in range(8)])
        assert server.connections == 4  # kept alive for the next task
        resources.close()
        deadline = time.monotonic() + 30
        while server.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.connections == 0


# --- the policy's arithmetic, without a server -----------------------------------------------------


def test_retry_after_reads_milliseconds_seconds_dates_and_overflows() -> None:
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "2.5"}) == 2.5
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None
    assert retry_after({"retry-after": "1e999"}) == 121  # an overflow asks for too long, not for nothing
    future = retry_after({"retry-after": email.utils.formatdate(time.time() + 60, usegmt=True)})
    assert future is not None and 55 < future <= 60


def test_a_retry_after_beyond_two_minutes_is_not_retried_and_backoff_is_bounded() -> None:
    assert not should_retry(429, {"retry-after": "121"})
    assert should_retry(429, {"retry-after": "120"}) and should_retry(500, {})
    assert delay(0, {"retry-after": "120"}) == 120
    assert delay(0, {"retry-after": "0"}) <= 0.5  # zero or less falls back to the backoff
    for retries, top in [(0, 0.5), (1, 1.0), (2, 2.0), (5, 8.0), (50, 8.0)]:
        assert 0.75 * top <= delay(retries, None) <= top
