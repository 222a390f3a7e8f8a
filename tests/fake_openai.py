"""A misbehaving OpenAI-compatible server for tests and benchmarks: a real HTTP server on a free port.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) to serve ``GET /v1/models``,
``POST /v1/chat/completions`` and vLLM's ``POST /pooling`` / ``POST /classify`` (a process reward
model's STEP pooling too). What it answers is a
*behaviour*: a coroutine function from the request to a :class:`Reply` (or ``None`` to hang until the
client gives up). Judges of groups are behaviours too: :func:`biased_pairwise` (a hidden quality per
completion and a preference for the completion shown first) and :func:`listwise` (grades by quality,
wherever a completion is shown). It records every request it received and the peak number in flight,
so tests check retries, timeouts, the in-flight bound, the cache and dedupe from the server's side.

In a thread of the test process::

    with FakeOpenAI(verdict("Reward: 1")) as server:
        server.base_url, server.requests, server.peak_in_flight

As a process of its own (for benchmarks), with a fixed latency and unlimited parallelism::

    python tests/fake_openai.py --port 8123 --latency 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

MODEL = "fake-judge"


@dataclass
class Request:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float

    @property
    def retry_count(self) -> int:
        """The openai client's own count of retries before this request (its x-stainless-retry-count)."""
        return int(self.headers.get("x-stainless-retry-count", "0"))

    @property
    def user_text(self) -> str:
        """The text of the last user message of a chat request."""
        messages = self.body.get("messages", []) if isinstance(self.body, dict) else []
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        return str(users[-1]) if users else ""


@dataclass
class Reply:
    """What the server sends back: a status, a JSON body (or raw bytes) and extra headers."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


Behaviour = Callable[[Request], Awaitable[Reply | None]]


def completion(*contents: str, finish_reason: str = "stop", refusal: str | None = None) -> Reply:
    """A chat completion with one choice per content."""
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": c, "refusal": refusal},
            "finish_reason": finish_reason,
        }
        for i, c in enumerate(contents)
    ]
    usage = {
        "prompt_tokens": 11,
        "completion_tokens": 3 * len(contents),
        "total_tokens": 11 + 3 * len(contents),
    }
    return Reply(
        body={
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": choices,
            "usage": usage,
        }
    )


def verdict(text: str, latency: float = 0.0) -> Behaviour:
    """Answer every chat request with ``text`` (``n`` copies) after ``latency`` seconds."""

    async def behave(request: Request) -> Reply:
        if latency:
            await asyncio.sleep(latency)
        n = int(request.body.get("n") or 1) if isinstance(request.body, dict) else 1
        return completion(*[text] * n)

    return behave


def from_text(reply: Callable[[Request], str], latency: float = 0.0) -> Behaviour:
    """Answer each chat request with ``reply(request)``."""

    async def behave(request: Request) -> Reply:
        if latency:
            await asyncio.sleep(latency)
        return completion(reply(request))

    return behave


def failing(times: int, status: int, then: Behaviour, headers: dict[str, str] | None = None) -> Behaviour:
    """Answer the first ``times`` attempts of each request with ``status``, then behave as ``then``.

    Attempts are told apart by the client's retry count, so each logical request fails ``times`` times.
    """

    async def behave(request: Request) -> Reply | None:
        if request.retry_count < times:
            return Reply(
                status, {"error": {"message": f"fake {status}", "code": status}}, headers=headers or {}
            )
        return await then(request)

    return behave


def always(status: int, message: str = "bad request") -> Behaviour:
    async def behave(request: Request) -> Reply:
        return Reply(status, {"error": {"message": message, "type": "BadRequestError", "code": status}})

    return behave


def hang() -> Behaviour:
    """Never answer: the request stays in flight until the client closes the connection."""

    async def behave(request: Request) -> None:
        return None

    return behave


def garbage() -> Behaviour:
    """A 200 whose body is not JSON."""

    async def behave(request: Request) -> Reply:
        return Reply(200, raw=b"<html>definitely not json")

    return behave


def classifier(score: Callable[[Request], float]) -> Behaviour:
    """Answer vLLM's ``/classify`` with ``score(request)`` as the one output (``/pooling``: per token)."""

    async def behave(request: Request) -> Reply:
        value = score(request)
        usage = {"prompt_tokens": 17, "total_tokens": 17, "completion_tokens": 0}
        if request.path.endswith("/pooling"):
            item: dict[str, Any] = {"index": 0, "object": "pooling", "data": [[value - 1.0], [value]]}
        else:
            item = {"index": 0, "label": "LABEL_0", "probs": [value], "num_classes": 1}
        return Reply(body={"object": "list", "model": MODEL, "data": [item], "usage": usage})

    return behave


def shown(request: Request) -> dict[str, str]:
    """The completions a judge's request shows, by label (``A``, ``B``, ``1``, ``2`` …), read from the
    default templates' ``[RESPONSE x]`` … ``[/RESPONSE x]`` blocks."""
    blocks = re.finditer(r"\[RESPONSE (\w+)\]\n(.*?)\n\[/RESPONSE \1\]", request.user_text, re.DOTALL)
    return {m.group(1): m.group(2) for m in blocks}


def biased_pairwise(quality: Callable[[str], float], margin: float, latency: float = 0.0) -> Behaviour:
    """A pairwise judge that knows each completion's hidden ``quality`` but prefers the completion shown
    first (A) unless the other is better by more than ``margin``. Answers ``[[A]]`` / ``[[B]]`` in free
    text, or the bare verdict when the request asks for structured output."""

    async def behave(request: Request) -> Reply:
        if latency:
            await asyncio.sleep(latency)
        pair = shown(request)
        a, b = quality(pair["A"]), quality(pair["B"])
        verdict = "B" if b - a > margin else "A"
        structured = isinstance(request.body, dict) and "structured_outputs" in request.body
        return completion(verdict if structured else f"Both are close; I prefer this one. [[{verdict}]]")

    return behave


def listwise(grade: Callable[[str], float]) -> Behaviour:
    """A listwise judge that grades each completion shown by ``grade``, whatever its place in the list."""

    async def behave(request: Request) -> Reply:
        grades = [grade(text) for _, text in sorted(shown(request).items(), key=lambda kv: int(kv[0]))]
        return completion("Graded. [[" + ", ".join(f"{g:g}" for g in grades) + "]]")

    return behave


def step_pooling(step_score: Callable[[str], float], tag: str = "<extra_0>") -> Behaviour:
    """Answer vLLM's ``/pooling`` as a process reward model served with STEP pooling does (``task`` =
    ``token_classify``, ``--pooler-config '{"pooling_type": "STEP", "step_tag_id": ...}'``): one row of
    the 2-label head's outputs per step tag in the last message, the text before each tag scored by
    ``step_score`` as the probability of label 1 (raw logits, or probabilities with ``use_activation``).
    Without ``task`` it answers as ``/pooling`` does for any pooling model: 400."""

    async def behave(request: Request) -> Reply:
        body = request.body if isinstance(request.body, dict) else {}
        if not request.path.endswith("/pooling") or body.get("task") != "token_classify":
            return Reply(400, {"error": {"message": "expected task token_classify", "code": 400}})
        steps = str(body["messages"][-1]["content"]).split(tag)[:-1]
        probabilities = [step_score(step) for step in steps]
        if body.get("use_activation"):
            rows = [[1.0 - p, p] for p in probabilities]
        else:
            rows = [[0.0, math.log(p / (1.0 - p))] for p in probabilities]
        usage = {"prompt_tokens": 29, "total_tokens": 29, "completion_tokens": 0}
        item = {"index": 0, "object": "pooling", "data": rows}
        return Reply(
            body={
                "id": "pool-fake",
                "object": "list",
                "created": 0,
                "model": MODEL,
                "data": [item],
                "usage": usage,
            }
        )

    return behave


def models_reply(model: str) -> Reply:
    return Reply(body={"object": "list", "data": [{"id": model, "object": "model", "owned_by": "fake"}]})


class FakeOpenAI:
    """The server, run on its own event loop in a daemon thread; a context manager."""

    def __init__(
        self, behaviour: Behaviour, *, model: str = MODEL, port: int = 0, api_key: str | None = None
    ) -> None:
        self.behaviour = behaviour
        self.model = model
        self.api_key = api_key  # when set, refuse requests without it, as ``vllm serve --api-key`` does
        self.requests: list[Request] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.connections = 0  # client connections open now
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-openai", daemon=True)

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def reset(self) -> None:
        self.requests.clear()
        self.peak_in_flight = 0

    def start(self) -> FakeOpenAI:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self._server = future.result(timeout=10)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", self._port, backlog=1024)

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._exchange(reader, writer)
        finally:
            self.connections -= 1

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, json.loads(body) if body else None, time.monotonic())
                self.requests.append(request)
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                try:
                    reply = await self._answer(request)
                    if reply is None:  # hang: wait for the client to give up and close
                        await reader.read()
                        return
                    writer.write(_encode(reply))
                    await writer.drain()
                finally:
                    self.in_flight -= 1
        writer.close()

    async def _answer(self, request: Request) -> Reply | None:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return Reply(401, {"error": "Unauthorized"})
        if request.method == "GET" and request.path.rstrip("/").endswith("/models"):
            return models_reply(self.model)
        return await self.behaviour(request)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Server Error"}


def _encode(reply: Reply) -> bytes:
    body = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
    head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
    head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in reply.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible judge with a fixed latency.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--reply", default="Reward: 1")
    args = parser.parse_args()
    server = FakeOpenAI(verdict(args.reply, args.latency), port=args.port).start()
    print(f"serving on {server.base_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    server.stop()


if __name__ == "__main__":
    main()
