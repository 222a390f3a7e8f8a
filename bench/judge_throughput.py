"""Judge throughput: concurrent requests against a server with a fixed latency, the cache-hit path end to end,
and (with ``--vllm-url``) a real vLLM server.

1. A fake OpenAI-compatible judge (tests/fake_openai.py) in a process of its own, answering every request
   after a fixed 50 ms with unlimited parallelism. The ``judge`` reward, in-process, scores batches of
   distinct samples with 1, 8, 32 and 64 requests in flight (``max_concurrency``, cache off); the sequential
   loop of ms-swift's documented pattern (a sync ``OpenAI`` client, one ``chat.completions.create`` per
   completion) runs interleaved with them, and so does, with ``--baseline DIR``, the judge of another
   checkout (main's, say) with its own ``DIR/.venv``, in a child process against the same server. Each
   row gives the client process's CPU time per sample (the server's is not included).
   Aim: >= 0.9 x N / latency up to N = 64 (>= 0.6 on a loaded 2-core machine).
2. The cache-hit path end to end: a 64-sample batch through ``RewardClient`` → Redis → a ``rewardq worker``
   → audit (SQLite), every request already cached, interleaved with the same batch scored by the ``format``
   rule reward through the same worker. Aim: judge >= 0.5 x format.
3. ``--vllm``: against a real vLLM server, the CPU build serving the tests' tiny random chat LM
   (tests/vllm_server.py; the venv is made on first use), or ``--vllm-url URL`` for a running one:
   requests/s of the sequential loop vs rewardq with 8 and 32 in flight (structured ``choice`` output),
   and the client process's CPU per request and share of the wall time (the rest is waiting on the
   server); with ``--baseline``, the other checkout's judge too.

    .venv/bin/python bench/judge_throughput.py --repeat 3 --vllm
    git worktree add --detach ../main-ref main && cp -a .venv ../main-ref/.venv  # then fix its scripts' #!
    ../main-ref/.venv/bin/python -m pip install --no-deps -e ../main-ref
    .venv/bin/python bench/judge_throughput.py --repeat 3 --parts 1 --baseline ../main-ref
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from _services import free_port, redis_server, sqlite_database, workers

from rewardq import RewardClient, Settings
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.judges.judge import JudgeReward
from rewardq.workers.rewards.judges.options import JudgeOptions, StructuredOutput

LATENCY = 0.05
IN_FLIGHT = (1, 8, 32, 64)
ROOT = Path(__file__).resolve().parent.parent
FAKE_SERVER = ROOT / "tests" / "fake_openai.py"
TEMPLATE = "Grade this answer from 0 to 10 as [[n]].\n{completion}"


@contextlib.contextmanager
def fake_judge(latency: float, reply: str = "[[7]]") -> Iterator[str]:
    """tests/fake_openai.py in a process of its own, answering ``reply`` to each request after ``latency``."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(FAKE_SERVER),
            "--port",
            str(port),
            "--latency",
            str(latency),
            "--reply",
            reply,
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "serving on ..."
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait()


def swift_loop(base_url: str, completions: list[str]) -> list[float]:
    """ms-swift's documented pattern: a sync OpenAI client, one request per completion, in a loop."""
    from openai import OpenAI

    client = OpenAI(api_key="EMPTY", base_url=base_url)
    model = client.models.list().data[0].id
    rewards = []
    for completion in completions:
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": TEMPLATE.format(completion=completion)}],
            max_tokens=16,
            temperature=0,
        )
        text = reply.choices[0].message.content or ""
        rewards.append(float(text.strip("[] ")) / 10 if text.startswith("[[") else 0.0)
    client.close()
    return rewards


def rate(run: Callable[[], Any], count: int) -> tuple[float, float]:
    """(samples/s, share of the wall time on this process's CPU)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, cpu / wall


def judge(resources: WorkerResources, base_url: str, in_flight: int, structured: bool = False) -> JudgeReward:
    """The judge of part 1, or with ``structured`` that of part 3 (a ``choice`` of 0 to 10, 4 tokens)."""
    options = JudgeOptions(
        base_url=(base_url,),
        template=TEMPLATE,
        score_range=(0, 10),
        max_concurrency=in_flight,
        cache=False,
        structured=StructuredOutput(choice=[str(k) for k in range(11)]) if structured else None,
        max_tokens=4 if structured else 1024,
    )
    reward = JudgeReward(f"judge{in_flight}{'s' * structured}", options)
    reward.setup(resources)
    return reward


class Judges:
    """Judges set up on first use, one per (server, in flight, structured); ``rate`` scores a batch."""

    def __init__(self) -> None:
        self.resources = WorkerResources(Settings.from_env({}))
        self.rewards: dict[tuple[str, int, bool], JudgeReward] = {}

    def rate(self, url: str, n: int, completions: list[str], structured: bool = False) -> tuple[float, float]:
        key = (url, n, structured)
        if key not in self.rewards:
            self.rewards[key] = judge(self.resources, url, n, structured)
        samples = [Sample(completion=c) for c in completions]
        return rate(partial(self.rewards[key].score, samples), len(samples))

    def close(self) -> None:
        self.resources.close()


def batch(n: int, rep: int, tag: str) -> list[str]:
    """Distinct completions for one run at ``n`` in flight: 8 per request slot, at least 32."""
    return [f"{tag} {n} {rep} {i}" for i in range(max(32, 8 * n))]


class Baseline:
    """Another checkout's judges, run by its own interpreter in a child process (``--serve-baseline``)."""

    def __init__(self, checkout: Path) -> None:
        python = checkout / ".venv" / "bin" / "python"
        commit = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        self.name = commit.stdout.strip() or checkout.name
        self.proc = subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), "--serve-baseline"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def rate(self, url: str, n: int, completions: list[str], structured: bool = False) -> tuple[float, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([url, n, completions, structured]) + "\n")
        self.proc.stdin.flush()
        per_s, share = json.loads(self.proc.stdout.readline())
        return per_s, share

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def serve_baseline() -> None:
    """The child of :class:`Baseline`: for each request line, the rate of :meth:`Judges.rate`."""
    judges = Judges()
    for line in sys.stdin:
        url, n, completions, structured = json.loads(line)
        print(json.dumps(judges.rate(url, n, completions, structured)), flush=True)
    judges.close()


def concurrency(repeat: int, loop_samples: int, other: Baseline | None) -> None:
    judges = Judges()
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with fake_judge(LATENCY) as url:
        for rep in range(repeat):
            loop_batch = [f"loop {rep} {i}" for i in range(loop_samples)]
            runs.setdefault(("loop", 1), []).append(rate(partial(swift_loop, url, loop_batch), loop_samples))
            for n in IN_FLIGHT:
                if other is not None:
                    runs.setdefault((other.name, n), []).append(other.rate(url, n, batch(n, rep, "base")))
                runs.setdefault(("this checkout", n), []).append(judges.rate(url, n, batch(n, rep, "this")))
    judges.close()

    print(f"\n1. fake judge, {LATENCY * 1000:.0f} ms per request, median of {repeat} runs")
    print("| client | samples/s | / (N / latency) | / loop | client CPU ms per sample |")
    print("|---|---|---|---|---|")
    loop = statistics.median(r for r, _ in runs[("loop", 1)])
    for (who, n), results in runs.items():
        per_s = statistics.median(r for r, _ in results)
        cpu_ms = statistics.median(share / r * 1000 for r, share in results)  # the server's not included
        label = "ms-swift loop (sequential)" if who == "loop" else f"{who}: judge, {n} in flight"
        print(f"| {label} | {per_s:.1f} | {per_s * LATENCY / n:.2f} | {per_s / loop:.1f} | {cpu_ms:.2f} |")


def cache_hits(iterations: int) -> None:
    rows = [{"prompt": f"q{i}", "completion": f"<think>t{i}</think><answer>{i}</answer>"} for i in range(64)]
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fake_judge(LATENCY))
        broker = stack.enter_context(redis_server())
        database = stack.enter_context(sqlite_database())
        config = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "rewards.toml"
        config.write_text(
            f'[rewards.judge]\nkind = "judge"\nbase_url = "{url}"\ntemplate = """{TEMPLATE}"""\n'
            "score_range = [0, 10]\n"
        )
        stack.enter_context(
            workers(1, broker, database, "--config", str(config), "-r", "judge,format", "--pool", "solo")
        )
        settings = Settings.from_env({}, broker_url=broker, database_url=database, rewards=config)
        client = stack.enter_context(RewardClient(settings))
        client.score(rows, "judge", run_id="warm", timeout=60)  # fills the cache
        times: dict[str, list[float]] = {"format": [], "judge": []}
        for i in range(iterations):
            for reward in ("format", "judge"):
                started = time.perf_counter()
                result = client.score(rows, reward, run_id="bench", step=i, timeout=60)
                times[reward].append(time.perf_counter() - started)
                assert result.statuses[reward] == ["ok"] * 64, result.errors
    per_s = {k: 64 / statistics.median(v) for k, v in times.items()}
    print(f"\n2. cache-hit path end to end, 64-sample batches, median of {iterations}")
    print("| reward | samples/s | / format |")
    print("|---|---|---|")
    for reward, value in per_s.items():
        print(f"| {reward} | {value:.0f} | {value / per_s['format']:.2f} |")


@contextlib.contextmanager
def vllm_judge() -> Iterator[str]:
    """The tests' real vLLM CPU server with the tiny random judge LM."""
    sys.path.insert(0, str(ROOT))
    from tests.tinymodels import build_causal_lm
    from tests.vllm_server import JUDGE_ARGS, JUDGE_MODEL, VllmServer, vllm_python

    with tempfile.TemporaryDirectory() as d:
        model_dir = build_causal_lm(Path(d) / "judge")
        server = VllmServer(vllm_python(), model_dir, JUDGE_MODEL, JUDGE_ARGS, Path(d) / "vllm.log")
        server.start()
        try:
            yield server.base_url
        finally:
            server.stop()


def real_vllm(base_url: str, samples: int, other: Baseline | None) -> None:
    judges = Judges()
    completions = [f"answer number {i}" for i in range(samples)]
    print(f"\n3. vLLM at {base_url}, {samples} distinct requests")
    print("| client | requests/s | client CPU ms per request | share of wall time on the client's CPU |")
    print("|---|---|---|---|")
    runs = {"ms-swift loop (sequential)": rate(lambda: swift_loop(base_url, completions), samples)}
    for n in (8, 32):
        if other is not None:
            runs[f"{other.name}: judge, {n} in flight"] = other.rate(base_url, n, completions, True)
        runs[f"this checkout: judge, {n} in flight"] = judges.rate(base_url, n, completions, True)
    judges.close()
    loop = runs["ms-swift loop (sequential)"][0]
    for label, (value, share) in runs.items():
        print(f"| {label} | {value:.2f} ({value / loop:.1f}x) | {share / value * 1000:.2f} | {share:.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop-samples", type=int, default=40)
    parser.add_argument("--cache-iterations", type=int, default=100)
    parser.add_argument("--vllm", action="store_true", help="part 3 on the tests' vLLM CPU server")
    parser.add_argument("--vllm-url", help="part 3 on a running vLLM server (its …/v1 base URL)")
    parser.add_argument("--vllm-samples", type=int, default=64)
    parser.add_argument("--parts", default="1,2", help="which of parts 1 and 2 to run")
    parser.add_argument("--baseline", type=Path, help="parts 1 and 3 also with this checkout's judge")
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline()
        return
    parts = set(args.parts.split(","))
    other = Baseline(args.baseline) if args.baseline is not None else None
    if "1" in parts:
        concurrency(args.repeat, args.loop_samples, other)
    if "2" in parts:
        cache_hits(args.cache_iterations)
    if args.vllm_url:
        real_vllm(args.vllm_url, args.vllm_samples, other)
    elif args.vllm:
        with vllm_judge() as url:
            real_vllm(url, args.vllm_samples, other)
    if other is not None:
        other.close()


if __name__ == "__main__":
    main()
