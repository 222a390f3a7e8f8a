"""The API fuzzed from its own OpenAPI document (schemathesis), then a hostile-input list of our own: no
answer is a 500 (and the fuzzed ones match the schemas the document gives them), a refused request
leaves nothing in Redis (not half a batch), and the worker that then scores whatever odd batches were
accepted stays up and scores a good batch after them.

Each runs twice: with no worker while the requests come (the client does not wait for one), so that
every message a request sends stays queued and is counted exactly, and a worker starts afterwards; and
with a worker from the start, the client checking that it serves each reward and pinning the run's
scorers (paths the first gateway does not take).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from rewardq import RewardClient, Settings
from rewardq.catalog import BUILTIN_REWARDS
from rewardq.gateway.app import create_app
from rewardq.gateway.config import GatewayConfig, KeyConfig, hash_key, new_key
from tests.conftest import RedisServer, WorkerProcess
from tests.gateway.conftest import Served, enqueued, rows

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 25  # per operation and generation mode: bounded for CI (about 350 requests in all)
KEY = new_key()
CONFIG = GatewayConfig(
    keys=[KeyConfig(name="fuzz", hash=hash_key(KEY), runs=[""], rewards=["*"])],
    max_timeout=0.5,  # a scoring request waits no longer for the worker that is not there yet
    max_body_bytes=1 << 20,
)
SCHEMA = schemathesis.openapi.from_dict(create_app(CONFIG).openapi())


class Ledger:
    """What requests leave in Redis: queued messages, stored samples, batch records, batch owners."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(url)

    def now(self) -> dict[str, int]:
        left = enqueued(self.url, BUILTIN_REWARDS)
        left["owners"] = len(list(self.redis.scan_iter("rewardq-gateway-owner-*")))
        return left

    def checked(self, send: Callable[[], Any]) -> Any:
        """Send a request: no 5xx, and nothing left behind unless it was accepted (a live worker may
        take messages meanwhile: nothing may grow)."""
        before = self.now()
        answer = send()
        status = answer.status_code
        assert status < 500, answer.text
        if status >= 400:
            after = self.now()
            assert all(after[k] <= before[k] for k in before), (status, answer.text, before, after)
        return answer


def _worker(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> WorkerProcess:
    return start_worker(
        redis_server.url, sqlite_url, "--rewards", ",".join(BUILTIN_REWARDS), "--concurrency", "1"
    )


@pytest.fixture(params=["no worker yet", "a live worker"])
def fuzzed(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    sqlite_url: str,
    serve: Callable[..., Served],
    start_worker: Callable[..., WorkerProcess],
) -> Iterator[tuple[Served, Ledger]]:
    live = request.param == "a live worker"
    if live:
        _worker(redis_server, sqlite_url, start_worker)
    wait = None if live else 0  # None: the default REWARDQ_SERVE_WAIT, and the run's scorers are pinned
    settings_ = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, serve_wait=wait)
    with RewardClient(settings_) as client:
        yield serve(CONFIG, client), Ledger(redis_server.url)


def _worker_survives(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess], gateway: Served
) -> None:
    """A worker scores everything the requests left queued, stays up, and then scores a good batch."""
    worker = _worker(redis_server, sqlite_url, start_worker)
    while enqueued(redis_server.url, BUILTIN_REWARDS)["messages"]:
        assert worker.proc.poll() is None, worker.output()
        time.sleep(0.1)
    with gateway.client(KEY) as http:
        good = http.post(
            "/v1/score",
            json={"run_id": "after-fuzz", "rewards": ["format"], "samples": rows(3), "timeout": 60},
        )
    assert good.json()["statuses"] == {"format": ["ok"] * 3}
    assert worker.proc.poll() is None


def test_fuzzed_from_the_openapi_document(
    fuzzed: tuple[Served, Ledger],
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    gateway, ledger = fuzzed
    auth = {"Authorization": f"Bearer {KEY}"}
    calls: dict[str, int] = {}
    for found in SCHEMA.get_all_operations():
        operation = found.ok()
        modes = [GenerationMode.POSITIVE]
        if len(operation.body) or len(operation.path_parameters):  # something to make invalid
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                derandomize=True,  # the same examples on every run: CI stays reproducible
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: schemathesis.Case) -> None:
                answer = ledger.checked(lambda: case.call(base_url=gateway.url, headers=auth, timeout=60))
                case.validate_response(answer, checks=[not_a_server_error, response_schema_conformance])
                label = f"{case.operation.label} {answer.status_code}"
                calls[label] = calls.get(label, 0) + 1

            fuzz()
    print(calls)
    assert {label.rsplit(" ", 1)[0] for label in calls} == {
        op.ok().label for op in SCHEMA.get_all_operations()
    }
    _worker_survives(redis_server, sqlite_url, start_worker, gateway)


def _raw(
    path: str, body: bytes | str, content_type: str = "application/json"
) -> Callable[[httpx.Client], Any]:
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return lambda http: http.post(path, content=data, headers={"Content-Type": content_type})


def _score(**fields: Any) -> Callable[[httpx.Client], Any]:
    body = {"run_id": "hostile", "rewards": ["format"], "samples": rows(2), **fields}
    return lambda http: http.post("/v1/score", json=body)


DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE: dict[str, Callable[[httpx.Client], Any]] = {
    "empty body": _raw("/v1/score", b""),
    "null": _raw("/v1/score", b"null"),
    "a list": _raw("/v1/batches", b"[1, 2]"),
    "truncated": _raw("/v1/score", b'{"run_id": "x", "samples": [{"comp'),
    "not UTF-8": _raw("/v1/score", b'{"run_id": "\xff\xfe", "rewards": ["format"], "samples": []}'),
    "nested 100k deep": _raw("/v1/score", f'{{"run_id": "x", "rewards": ["format"], "samples": [{DEEP}]}}'),
    "a column nested 300 deep": _raw(
        "/v1/score",
        '{"run_id": "x", "rewards": ["format"], "samples": [{"completion": "a", "c": '
        + DEEP[99_700:100_300]
        + "}]}",
    ),
    "NaN weight": _raw(
        "/v1/score", '{"run_id": "x", "rewards": {"format": NaN}, "samples": [{"completion": "a"}]}'
    ),
    "infinite timeout": _raw(
        "/v1/score", '{"run_id": "x", "rewards": ["format"], "samples": [], "timeout": Infinity}'
    ),
    "NaN in a column": _raw(
        "/v1/score", '{"run_id": "x", "rewards": ["format"], "samples": [{"completion": "a", "v": NaN}]}'
    ),
    "huge integer step": _raw(
        "/v1/score", '{"run_id": "x", "rewards": ["format"], "samples": [], "step": 1' + "0" * 400 + "}"
    ),
    "huge integer column": _raw(
        "/v1/score",
        '{"run_id": "x", "rewards": ["format"], "samples": [{"completion": "a", "n": 1' + "0" * 400 + "}]}",
    ),
    "lone surrogate run id": _raw(
        "/v1/score", '{"run_id": "\\ud800", "rewards": ["format"], "samples": [{"completion": "a"}]}'
    ),
    "lone surrogate completion": _raw(
        "/v1/score", '{"run_id": "x", "rewards": ["format"], "samples": [{"completion": "\\udfff"}]}'
    ),
    "lone surrogate column name": _raw(
        "/v1/score", '{"run_id": "x", "rewards": ["format"], "samples": [{"completion": "a", "\\ud800": 1}]}'
    ),
    "NUL in the run id": _score(run_id="a\x00b"),
    "NUL in a completion": _score(samples=[{"completion": "a\x00b"}]),
    "a long run id": _score(run_id="r" * 10_000),
    "a long reward name": _score(rewards=["f" * 10_000]),
    "many reward names": _score(rewards=[f"r{i}" for i in range(5_000)]),
    "many empty samples": _score(samples=[{}] * 20_000),
    "duplicate keys": _raw(
        "/v1/score", '{"run_id": "x", "run_id": "y", "rewards": ["format"], "samples": []}'
    ),
    "text/plain": _raw("/v1/score", '{"run_id": "x", "rewards": ["format"], "samples": []}', "text/plain"),
    "a form": _raw("/v1/score", "run_id=x&rewards=format", "application/x-www-form-urlencoded"),
    "samples an object": _score(samples={"completion": "a"}),
    "rewards a number": _score(rewards=7),
    "step a boolean": _score(step=True),
    "step a string": _score(step="3"),
    "an unknown field": _score(admin=True),
    "an unknown deadline policy": lambda http: http.post(
        "/v1/batches", json={"run_id": "x", "rewards": ["format"], "samples": rows(1), "on_deadline": "never"}
    ),
    "a negative deadline": lambda http: http.post(
        "/v1/batches", json={"run_id": "x", "rewards": ["format"], "samples": rows(1), "deadline": -1}
    ),
    "a zero timeout": _score(timeout=0),
    "a chat completion of objects": _score(
        samples=[{"completion": [{"role": "assistant", "content": {"$gt": 1}}]}]
    ),
    "empty messages": _score(samples=[{"messages": []}]),
    "messages not ending with the assistant": _score(
        samples=[{"messages": [{"role": "user", "content": "hi"}]}]
    ),
    "a body over the limit": _score(samples=[{"completion": "x" * (2 << 20)}]),
    "a path out of the API": lambda http: http.get("/v1/batches/..%2F..%2Fetc%2Fpasswd"),
    "a batch id too long": lambda http: http.get("/v1/batches/" + "a" * 33),
    "an upper-case batch id": lambda http: http.post("/v1/batches/" + "A" * 32 + "/collect"),
    "a key 100k long": lambda http: http.get(
        "/v1/rewards", headers={"Authorization": "Bearer " + "k" * 100_000}
    ),
    "a request id 10k long": lambda http: http.get("/v1/rewards", headers={"X-Request-ID": "i" * 10_000}),
    # Accepted, and odd: the worker scores them after.
    "a completion of combining marks": _score(samples=[{"completion": "a" + "\u0301" * 100_000}]),
    "a completion of NULs": _score(samples=[{"completion": "\x00" * 1000}]),
    "a solution of open braces": lambda http: http.post(
        "/v1/score",
        json={
            "run_id": "x",
            "rewards": ["accuracy"],
            "samples": [{"completion": "\\boxed{1}", "solution": "\\boxed{" * 200}],
        },
    ),
    "a column of every JSON type": _score(
        samples=[{"completion": "a", "c": [None, True, 1, 1.5, "s", {"k": []}]}]
    ),
}


def test_a_hostile_input_list(
    fuzzed: tuple[Served, Ledger],
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    gateway, ledger = fuzzed
    statuses = {}
    with gateway.client(KEY) as http:
        for name, send in HOSTILE.items():
            statuses[name] = ledger.checked(lambda send=send: send(http)).status_code
    assert statuses["a body over the limit"] == 413
    assert statuses["a key 100k long"] in {400, 401, 431}
    accepted = {name for name, status in statuses.items() if status < 400}
    assert accepted == {
        "NaN in a column",  # JSON's NaN, read as a float; the worker gets null
        "NUL in a completion",  # the audit keeps hashes of text, not the text
        "a request id 10k long",  # replaced by one of the gateway's own
        "a completion of combining marks",
        "a completion of NULs",
        "a solution of open braces",
        "a column of every JSON type",
    }, statuses
    _worker_survives(redis_server, sqlite_url, start_worker, gateway)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["prompt", "solution", "id", "sample_id", "group"]) | st.text(max_size=8)
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "tool"]), "content": JSON}
    ),
    min_size=1,
    max_size=3,
)
# Mostly rows of a valid shape with odd values (which reach the worker), some of any shape at all.
ROW = st.one_of(
    st.builds(
        lambda c, cols: {**{f"c_{k}": v for k, v in cols.items()}, "completion": c},
        st.text(),
        st.dictionaries(st.text(max_size=8), JSON, max_size=4),
    ),
    st.builds(
        lambda c, cols: {**cols, "completion": c}, st.text() | MESSAGES | JSON, st.dictionaries(FIELDS, JSON)
    ),
    st.builds(lambda m, cols: {**cols, "messages": m}, MESSAGES, st.dictionaries(FIELDS, JSON, max_size=3)),
    st.dictionaries(FIELDS | st.just("completion"), JSON, max_size=4),
)


def test_samples_of_any_json_shape(
    fuzzed: tuple[Served, Ledger],
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Rows of every JSON shape past the schema (which takes any object), into the client's validation
    and, where it accepts them, the worker."""
    gateway, ledger = fuzzed
    statuses: dict[int, int] = {}
    with gateway.client(KEY) as http:

        @given(samples=st.lists(ROW, min_size=1, max_size=3))
        @settings(
            max_examples=MAX_EXAMPLES * 2,
            deadline=None,
            derandomize=True,  # the same examples on every run: CI stays reproducible
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(samples: list[dict[str, Any]]) -> None:
            batch = {"run_id": "rows", "rewards": ["format", "accuracy"], "samples": samples}
            status = ledger.checked(lambda: http.post("/v1/batches", json=batch)).status_code
            statuses[status] = statuses.get(status, 0) + 1

        fuzz()
    assert set(statuses) == {202, 422}, statuses  # some refused, some through to the worker
    _worker_survives(redis_server, sqlite_url, start_worker, gateway)
