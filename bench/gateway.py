"""The gateway's foreign routes against the Python client, side by side on the same samples and workers.

(a) OpenRLHF's ``/get_reward`` with 256-completion batches, one request at a time, against
``RewardClient.submit(...).get()`` on the same 256 rows, alternating: p50/p99 latency, requests per
second, the latency the gateway adds and the ratio of p50s (aim <= 1.3x).
(b) slime's per-sample ``/slime`` calls, 64 in flight (aiohttp, as slime's own session), for
``--samples`` samples, against one client batch of the same samples: samples per second and the
ratio (aim >= 0.5x). 64 calls in flight can go no faster than 64 per batch round trip, so the ratio
depends on what scoring a sample costs: ``--rewards`` picks it (default ``accuracy,format``, math
verification as slime's own rule rewards do; ``format,repetition``: two cheap regex rewards).

The gateway runs as ``rewardq serve`` (its own process, under uvicorn) before a private redis-server,
a SQLite audit and ``--workers`` worker processes serving the rewards (the first weighted 1, the
others 0.5).

    .venv/bin/python bench/gateway.py [--rounds 30] [--samples 512] [--workers 1] [--rewards accuracy,format]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from _services import REWARDQ, free_port, redis_server, sqlite_database, workers

from rewardq import RewardClient, Settings
from rewardq.gateway.config import hash_key, new_key

BATCH = 256
IN_FLIGHT = 64
AIM_LATENCY = 1.3
AIM_PER_SAMPLE = 0.5
PROMPT = "Solve: what is 17 * 23? Think, then answer."
LABEL = "391"


def completion(i: int) -> str:
    words = " ".join(f"step{j} multiplies {i} by {j}" for j in range(i % 7 + 3))
    return f"<think>{words}</think><answer>\\boxed{{{17 * 23 + i % 2}}}</answer>"


def row(text: str) -> dict[str, Any]:
    return {"prompt": PROMPT, "completion": text, "solution": LABEL}


@contextmanager
def gateway(broker: str, database: str, key: str, run_id: str, rewards: dict[str, float]) -> Iterator[str]:
    """``rewardq serve`` on a free port with the openrlhf and slime tables; yields its base URL."""
    port = free_port()
    weights = ", ".join(f"{name} = {weight}" for name, weight in rewards.items())
    tables = "\n".join(
        f'[gateway.protocols.{name}]\nrewards = {{{weights}}}\nrun_id = "{run_id}"\n'
        for name in ("openrlhf", "slime")
    )
    keys = f'[[gateway.keys]]\nname = "bench"\nhash = "{hash_key(key)}"\nruns = [""]\nrewards = ["*"]\n'
    with tempfile.TemporaryDirectory() as d:
        config = Path(d) / "gateway.toml"
        config.write_text(f"[gateway]\n{keys}\n{tables}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
        env.update({"REWARDQ_BROKER_URL": broker, "REWARDQ_DATABASE_URL": database})
        log = Path(d) / "serve.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [REWARDQ, "serve", "--config", str(config), "--port", str(port), "--no-access-log"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/v1/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text())
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def batches(
    client: RewardClient, http: httpx.Client, url: str, rounds: int, run_id: str, rewards: dict[str, float]
) -> dict[str, Any]:
    """(a): alternate a client batch and a /get_reward request of the same 256 rows; check they agree."""
    direct: list[float] = []
    routed: list[float] = []
    for r in range(rounds + 1):  # the first round warms both paths up and is not counted
        texts = [completion(r * BATCH + i) for i in range(BATCH)]
        body = {"query": [PROMPT + t for t in texts], "prompts": [PROMPT] * BATCH, "labels": [LABEL] * BATCH}
        started = time.perf_counter()
        expected = client.submit([row(t) for t in texts], rewards, run_id=run_id).get(timeout=120).totals
        middle = time.perf_counter()
        answer = http.post(f"{url}/get_reward", json=body).raise_for_status().json()
        ended = time.perf_counter()
        if answer["rewards"] != expected:
            raise SystemExit(f"round {r}: the gateway's rewards differ from the client's")
        if r:
            direct.append(middle - started)
            routed.append(ended - middle)
    return {"client": direct, "gateway": routed}


async def per_sample(url: str, key: str, texts: list[str]) -> float:
    """(b): every sample posted on its own to /slime, IN_FLIGHT at once; the seconds it took."""
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(text: str) -> float:
            body = {"prompt": PROMPT, "response": text, "label": LABEL}
            async with session.post(f"{url}/slime", json=body) as resp:
                resp.raise_for_status()
                return float(await resp.json())

        started = time.perf_counter()
        await asyncio.gather(*(one(t) for t in texts))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="256-completion batches per path in (a)")
    parser.add_argument("--samples", type=int, default=512, help="per-sample calls in (b)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rewards", default="accuracy,format", help="the rewards scored, comma-separated")
    args = parser.parse_args()
    names = args.rewards.split(",")
    rewards = {name: 1.0 if i == 0 else 0.5 for i, name in enumerate(names)}
    key, run_id = new_key(), "bench-gateway"
    worker_args = ("--rewards", args.rewards, "--concurrency", "2")
    with (
        redis_server() as broker,
        sqlite_database() as database,
        workers(args.workers, broker, database, *worker_args),
        gateway(broker, database, key, run_id, rewards) as url,
        RewardClient(Settings.from_env({}, broker_url=broker, database_url=database)) as client,
        httpx.Client(timeout=120, auth=("bench", key)) as http,
    ):
        times = batches(client, http, url, args.rounds, run_id, rewards)
        texts = [completion(i) for i in range(args.samples)]
        asyncio.run(per_sample(url, key, texts[:IN_FLIGHT]))  # warm-up
        one_batch = time.perf_counter()
        client.submit([row(t) for t in texts], rewards, run_id=run_id).get(120)
        one_batch = time.perf_counter() - one_batch
        coalesced = asyncio.run(per_sample(url, key, texts))

    p50 = {k: statistics.median(v) for k, v in times.items()}
    print(f"rewards {rewards}, {args.workers} worker(s) of 2 processes")
    print(f"(a) /get_reward, {BATCH}-completion batches, {args.rounds} each, alternating:")
    for name, values in times.items():
        print(
            f"    {name:8} p50 {p50[name] * 1e3:7.1f} ms  p99 {percentile(values, 0.99) * 1e3:7.1f} ms"
            f"  {len(values) / sum(values):6.1f} requests/s"
        )
    ratio = p50["gateway"] / p50["client"]
    added = (p50["gateway"] - p50["client"]) * 1e3
    verdict = "meets" if ratio <= AIM_LATENCY else "MISSES"
    print(
        f"    added p50 {added:.1f} ms; gateway/client p50 {ratio:.2f}x ({verdict} the aim <= {AIM_LATENCY}x)"
    )
    batch_rate, coalesced_rate = args.samples / one_batch, args.samples / coalesced
    ratio = coalesced_rate / batch_rate
    verdict = "meets" if ratio >= AIM_PER_SAMPLE else "MISSES"
    print(f"(b) {args.samples} samples: /slime per sample, {IN_FLIGHT} in flight, against one client batch:")
    print(f"    one batch {batch_rate:7.0f} samples/s ({one_batch * 1e3:.0f} ms)")
    print(f"    /slime    {coalesced_rate:7.0f} samples/s ({coalesced * 1e3:.0f} ms)")
    print(f"    per-sample/batch {ratio:.2f}x ({verdict} the aim >= {AIM_PER_SAMPLE}x)")


if __name__ == "__main__":
    main()
