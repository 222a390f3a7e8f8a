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
   and the share of the wall time the bench process spent on its CPU (rewardq and the openai client;
   the rest is waiting on the server).

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
def fake_judge(latency: float) -> Iterator[str]:
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
            "[[7]]",
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


def judge(resources: WorkerResources, base_url: str, in_flight: int) -> JudgeReward:
    options = JudgeOptions(
        base_url=(base_url,), template=TEMPLATE, score_range=(0, 10), max_concurrency=in_flight, cache=False
    )
    reward = JudgeReward(f"judge{in_flight}", options)
    reward.setup(resources)
    return reward


def batch(n: int, rep: int, tag: str) -> list[Sample]:
    """Distinct samples for one run at ``n`` in flight: 8 per request slot, at least 32."""
    return [Sample(completion=f"{tag} {n} {rep} {i}") for i in range(max(32, 8 * n))]


class Baseline:
    """The judge of another checkout, run by its own interpreter in a child process (``--serve-baseline``)."""

    def __init__(self, checkout: Path, url: str) -> None:
        python = checkout / ".venv" / "bin" / "python"
        commit = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        self.name = commit.stdout.strip() or checkout.name
        self.proc = subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), "--serve-baseline", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def rate(self, n: int, rep: int) -> tuple[float, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n} {rep}\n")
        self.proc.stdin.flush()
        per_s, share = json.loads(self.proc.stdout.readline())
        return per_s, share

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def serve_baseline(url: str) -> None:
    """The child of :class:`Baseline`: for each ``n rep`` line, score a batch and print the rate."""
    resources = WorkerResources(Settings.from_env({}))
    rewards = {n: judge(resources, url, n) for n in IN_FLIGHT}
    for line in sys.stdin:
        n, rep = map(int, line.split())
        samples = batch(n, rep, "baseline")
        print(json.dumps(rate(partial(rewards[n].score, samples), len(samples))), flush=True)
    resources.close()


def concurrency(repeat: int, loop_samples: int, baseline: Path | None) -> None:
    resources = WorkerResources(Settings.from_env({}))
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with fake_judge(LATENCY) as url:
        other = Baseline(baseline, url) if baseline is not None else None
        rewards = {n: judge(resources, url, n) for n in IN_FLIGHT}
        for rep in range(repeat):
            loop_batch = [f"loop {rep} {i}" for i in range(loop_samples)]
            runs.setdefault(("loop", 1), []).append(rate(partial(swift_loop, url, loop_batch), loop_samples))
            for n, reward in rewards.items():
                if other is not None:
                    runs.setdefault((other.name, n), []).append(other.rate(n, rep))
                samples = batch(n, rep, "this")
                runs.setdefault(("this checkout", n), []).append(
                    rate(partial(reward.score, samples), len(samples))
                )
        if other is not None:
            other.close()
    resources.close()

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


def real_vllm(base_url: str, samples: int) -> None:
    resources = WorkerResources(Settings.from_env({}))
    batch = [Sample(completion=f"answer number {i}") for i in range(samples)]
    print(f"\n3. vLLM at {base_url}, {samples} distinct requests")
    print("| client | requests/s | share of wall time on the bench's CPU |")
    print("|---|---|---|")
    loop, loop_cpu = rate(lambda: swift_loop(base_url, [s.completion_text for s in batch]), samples)
    print(f"| ms-swift loop (sequential) | {loop:.2f} | {loop_cpu:.1%} |")
    for n in (8, 32):
        options = JudgeOptions(
            base_url=(base_url,),
            template=TEMPLATE,
            structured=StructuredOutput(choice=[str(k) for k in range(11)]),
            score_range=(0, 10),
            max_tokens=4,
            max_concurrency=n,
            cache=False,
        )
        reward = JudgeReward(f"vllm{n}", options)
        reward.setup(resources)
        value, cpu = rate(partial(reward.score, batch), samples)
        print(f"| rewardq judge, {n} in flight | {value:.2f} ({value / loop:.1f}x) | {cpu:.1%} |")
    resources.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loop-samples", type=int, default=40)
    parser.add_argument("--cache-iterations", type=int, default=100)
    parser.add_argument("--vllm", action="store_true", help="part 3 on the tests' vLLM CPU server")
    parser.add_argument("--vllm-url", help="part 3 on a running vLLM server (its …/v1 base URL)")
    parser.add_argument("--vllm-samples", type=int, default=64)
    parser.add_argument("--parts", default="1,2", help="which of parts 1 and 2 to run")
    parser.add_argument("--baseline", type=Path, help="part 1 also with the judge of this checkout")
    parser.add_argument("--serve-baseline", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return
    parts = set(args.parts.split(","))
    if "1" in parts:
        concurrency(args.repeat, args.loop_samples, args.baseline)
    if "2" in parts:
        cache_hits(args.cache_iterations)
    if args.vllm_url:
        real_vllm(args.vllm_url, args.vllm_samples)
    elif args.vllm:
        with vllm_judge() as url:
            real_vllm(url, args.vllm_samples)


if __name__ == "__main__":
    main()
