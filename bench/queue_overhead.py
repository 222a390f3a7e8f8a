"""Queue overhead: a 64-sample `format` batch through Redis + a worker process + the audit write, versus
calling the scorer directly in-process, as a ratio to the round trip of an empty Celery task through the
same Redis. Each configuration (audit store, worker pool) runs in turn with only its two workers up (a
`rewardq worker` and one serving an empty task, same pool); in every iteration the direct call, the
queued batch and the empty task run back to back. Prints p50 and p99 of each, the overhead (queued minus
direct, per iteration) and its p50 over the empty task's p50 (aim: at most 2.0). ``--baseline CHECKOUT``
runs each configuration also under that checkout's ``.venv`` (client, workers), back to back.

    .venv/bin/python bench/queue_overhead.py --iterations 300 [--baseline /work/wt/base]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _empty_worker import EMPTY_QUEUE, EMPTY_TASK
from _services import checkout_rewardq, postgres_database, redis_server, sqlite_database, workers
from celery import Celery
from pydantic import TypeAdapter

from rewardq import RewardClient, Settings
from rewardq.broker import GATHER_POLL_S, make_app
from rewardq.samples import to_samples
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.rules.format import FormatReward

AIM_RATIO = 2.0
CONFIGS = (("postgres", "solo"), ("postgres", "prefork"), ("sqlite", "solo"), ("sqlite", "prefork"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@contextlib.contextmanager
def empty_worker(broker: str, pool: str) -> Iterator[None]:
    script = str(Path(__file__).with_name("_empty_worker.py"))
    proc = subprocess.Popen(
        [sys.executable, script, broker, pool], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    control = make_app(Settings.from_env({}, broker_url=broker))
    try:
        while not any("empty@" in name for reply in control.control.ping(timeout=0.5) for name in reply):
            if proc.poll() is not None:
                raise RuntimeError(f"the empty-task worker exited with {proc.returncode}")
        yield
    finally:
        control.close()
        proc.terminate()
        proc.wait(30)


def empty_round_trip(app: Celery) -> float:
    """Seconds to send the empty task and gather its result. The result is forgotten and unhooked from
    the backend before it goes out of scope: Celery's ``AsyncResult.__del__`` unsubscribes through the
    backend, and one collected after Redis stopped retried for minutes at exit."""
    t0 = time.perf_counter()
    result = app.send_task(EMPTY_TASK, queue=EMPTY_QUEUE)
    result.get(timeout=30, interval=GATHER_POLL_S)
    seconds = time.perf_counter() - t0
    result.forget()
    app.backend.remove_pending_result(result)
    result.backend = None
    return seconds


def measure(args: argparse.Namespace, db: str, pool: str) -> dict[str, list[float]]:
    """One configuration's per-iteration ms: the direct call, the queued batch, their difference, the
    empty task. Its own redis-server and audit store, only its two workers up."""
    rows = [
        {"prompt": f"q{i}", "completion": f"<think>step {i}</think><answer>{i}</answer>"} for i in range(64)
    ]
    samples = TypeAdapter(list[Sample]).validate_python(to_samples(rows, max_record_bytes=1 << 20))
    scorer = FormatReward("format", FormatReward.Options())
    worker_args = ("--rewards", "format", "--pool", pool, "--concurrency", "1", "--loglevel", "WARNING")
    times: dict[str, list[float]] = {"direct": [], "queued": [], "overhead": [], "empty": []}
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(redis_server())
        url = stack.enter_context(postgres_database() if db == "postgres" else sqlite_database())
        stack.enter_context(workers(1, broker, url, *worker_args))
        stack.enter_context(empty_worker(broker, pool))
        client = stack.enter_context(RewardClient(Settings.from_env({}, broker_url=broker, database_url=url)))
        for i in range(args.warmup + args.iterations):
            t0 = time.perf_counter()
            scorer.score(samples)
            direct = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = client.submit(rows, "format", run_id="bench", step=i).get(timeout=30)
            queued = time.perf_counter() - t0
            assert result.statuses["format"] == ["ok"] * 64
            empty_s = empty_round_trip(client.app)
            if i >= args.warmup:
                for key, seconds in zip(times, (direct, queued, queued - direct, empty_s), strict=True):
                    times[key].append(seconds * 1000)
    return times


def measure_baseline(args: argparse.Namespace, config: str) -> dict[str, list[float]]:
    """One configuration measured by this script under the ``--baseline`` checkout's .venv."""
    python = str(Path(checkout_rewardq(args.baseline)).with_name("python"))
    argv = ["--iterations", str(args.iterations), "--warmup", str(args.warmup), "--configs", config]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([python, __file__, *argv, "--json-out", out.name], check=True)
        return dict(json.loads(Path(out.name).read_text())[config])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument(
        "--configs",
        default=",".join(f"{db}/{pool}" for db, pool in CONFIGS),
        help="comma-separated store/pool pairs to run",
    )
    parser.add_argument("--baseline", metavar="CHECKOUT", help="each configuration also under that checkout")
    parser.add_argument("--json-out", help=argparse.SUPPRESS)  # how a baseline run hands its figures back
    args = parser.parse_args()

    # One configuration at a time, only its workers running (idle workers of the others would add
    # about 1.5 ms here); within a phase the three round trips alternate. With a baseline, each
    # configuration runs under both checkouts back to back, which goes first alternating.
    timings: dict[str, dict[str, list[float]]] = {}
    for n, config in enumerate(args.configs.split(",")):
        sides = ["this", "baseline"] if args.baseline else ["this"]
        for side in sides[:: 1 if n % 2 == 0 else -1]:
            if side == "baseline":
                timings[f"{config} baseline"] = measure_baseline(args, config)
            else:
                timings[config] = measure(args, *config.split("/"))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(timings))
        return

    print(f"64-sample `format` batch from a trainer's rows, {args.iterations} interleaved iterations, in ms")
    if args.baseline:
        print(f"this: {Path(__file__).resolve().parents[1]}   baseline: {args.baseline}")
    header = ("path (audit store / pool)", "direct", "queued", "overhead", "empty task", "p50 ratio")
    print(f"{header[0]:<28}" + "".join(f"{h:>20}" for h in header[1:]))
    print(f"{'':<28}" + f"{'p50 / p99':>20}" * 4 + f"{f'(aim <= {AIM_RATIO})':>20}")
    for name in sorted(timings, key=lambda k: (k.split()[0], k)):
        times = timings[name]
        cells = [f"{pct(times[k], 50):.3f} / {pct(times[k], 99):.3f}" for k in times]
        ratio = pct(times["overhead"], 50) / pct(times["empty"], 50)
        print(f"{name:<28}" + "".join(f"{c:>20}" for c in cells) + f"{ratio:>20.2f}")


if __name__ == "__main__":
    main()
