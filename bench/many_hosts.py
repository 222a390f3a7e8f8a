"""Samples per second with 1, 2 and 4 worker processes, each on a host of its own, against the ideal line.

Four real `rewardq worker` processes (solo pool) run, each in a network namespace of its own
(tests/netns_hosts.py), reaching a private redis-server and a private PostgreSQL cluster (the audit) over
their veth links; the producer runs on this machine. Worker ``i`` serves the rewards ``burn<n>`` and
``noop<n>`` for every count ``n`` above ``i``, so a batch of ``burn2`` is scored by exactly two hosts while
all four stay up, and the counts alternate within each round. ``burn`` is a `function` reward that burns
``--cpu-ms`` of CPU per sample (its cost dominates); ``noop`` does nothing, and measures the path itself
(producer, Redis, the worker's task, the audit write) and the CPU that Redis and PostgreSQL spend per task,
the shared part a fleet cannot add hosts to. Prints measured against ideal (1 host's rate times N), Amdahl's
serial fraction of each point, and the fleet those figures predict (docs/benchmarks.md, "Workers on many
hosts"). Needs root and iproute2.

    .venv/bin/python bench/many_hosts.py [--samples 384] [--chunk 8] [--cpu-ms 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewardq import RewardClient, Settings  # noqa: E402
from tests.conftest import RedisServer, WorkerProcess  # noqa: E402
from tests.faults.conftest import PostgresCluster  # noqa: E402
from tests.netns_hosts import Hosts, why_not  # noqa: E402

COUNTS = (1, 2, 4)
NOOP_FACTOR = 4  # no-work batches are this many times larger, to last long enough to time
PLUGIN = '''\
"""A reward whose cost is a fixed CPU time per sample, and one that costs nothing."""
import os
import time

CPU_S = float(os.environ["BURN_MS"]) / 1000


def burn(prompts, completions, **kwargs):
    values = []
    for c in completions:
        end = time.process_time() + CPU_S
        while time.process_time() < end:
            pass
        values.append(float(len(c)))
    return values


def noop(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]
'''


def config() -> str:
    return "".join(
        f'[rewards.{kind}{n}]\nkind = "function"\nfunction = "burn.py:{kind}"\nconvention = "trl"\n\n'
        for kind in ("burn", "noop")
        for n in COUNTS
    )


def start(
    hosts: Hosts, i: int, redis: RedisServer, pg: PostgresCluster, work: Path, cpu_ms: float
) -> WorkerProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env.update(
        {
            "REWARDQ_BROKER_URL": f"redis://{hosts.gateway(i)}:{redis.port}/0",
            "REWARDQ_DATABASE_URL": pg.url_at(hosts.gateway(i)),
            "REWARDQ_HOME": str(work / f"home{i}"),
            "BURN_MS": str(cpu_ms),
        }
    )
    rewards = ",".join(f"{kind}{n}" for kind in ("burn", "noop") for n in COUNTS if n > i)
    args = ["--config", str(work / "rewards.toml"), "--rewards", rewards, "--pool", "solo"]
    return WorkerProcess(args, env, work / f"worker{i}.log", hosts.exec_prefix(i))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its children that have exited (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def cluster_cpu(postmaster: int) -> float:
    """CPU of a PostgreSQL cluster: the postmaster, its live backends and those that exited."""
    total = cpu_seconds(postmaster)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                total += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return total


def timed(client: RewardClient, reward: str, n: int, tag: str) -> float:
    batch = [{"prompt": "p", "completion": f"{tag} completion {i}", "id": f"{tag}-{i}"} for i in range(n)]
    t0 = time.perf_counter()
    result = client.submit(batch, [reward], run_id=tag).get(600)
    elapsed = time.perf_counter() - t0
    assert result.statuses[reward] == ["ok"] * n, f"{reward}: a sample was not scored ok"
    return elapsed


def serial_fraction(speedup: float, n: int) -> float:
    """Amdahl's s from one point: speedup = 1 / (s + (1 - s) / n)."""
    return (n / speedup - 1) / (n - 1)


def report(title: str, rates: dict[int, float], label: str) -> None:
    print(f"\n{title}")
    print(f"{'hosts':>6} {'measured ' + label:>20} {'ideal':>10} {'measured/ideal':>15} {'Amdahl s':>9}")
    for n, rate in rates.items():
        ideal = rates[1] * n
        s = "" if n == 1 else f"{serial_fraction(rate / rates[1], n):.3f}"
        print(f"{n:>6} {rate:>20.1f} {ideal:>10.1f} {rate / ideal:>15.2f} {s:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=384)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--cpu-ms", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if (reason := why_not()) is not None:
        raise SystemExit(f"cannot make network namespaces here: {reason}")
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; {args.samples} samples"
    )
    print(
        f"a batch in tasks of {args.chunk} ({args.samples * NOOP_FACTOR} for no work), best of {args.repeat}"
    )
    hosts = Hosts(max(COUNTS))
    burn: dict[int, list[float]] = {n: [] for n in COUNTS}
    noop: dict[int, list[float]] = {n: [] for n in COUNTS}
    redis_cpu = pg_cpu = producer_cpu = 0.0
    noop_tasks = 0
    with tempfile.TemporaryDirectory(prefix="rewardq-hosts-") as d:
        work = Path(d)
        (work / "burn.py").write_text(PLUGIN)
        (work / "rewards.toml").write_text(config())
        redis = RedisServer(work / "redis", bind=("127.0.0.1", *hosts.gateways))
        pg = PostgresCluster(listen=("127.0.0.1", *hosts.gateways), trust=hosts.network)
        workers: list[WorkerProcess] = []
        try:
            redis.start()
            pg.start()
            redis_pid = redis.proc.pid if redis.proc else 0
            postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
            workers = [start(hosts, i, redis, pg, work, args.cpu_ms) for i in range(max(COUNTS))]
            for worker in workers:
                worker.wait_ready()
            settings = Settings.from_env(
                {},
                broker_url=redis.url,
                database_url=pg.url,
                rewards=work / "rewards.toml",
                chunk_size=args.chunk,
            )
            with RewardClient(settings) as client:
                for n in COUNTS:  # warm up: every worker's reward child, the audit's connections
                    timed(client, f"burn{n}", 2 * n * args.chunk, f"warm-burn{n}")
                    timed(client, f"noop{n}", 2 * n * args.chunk, f"warm-noop{n}")
                for r in range(args.repeat):
                    for n in COUNTS:
                        burn[n].append(timed(client, f"burn{n}", args.samples, f"b{n}-{r}"))
                        before = cpu_seconds(redis_pid), cluster_cpu(postmaster), time.process_time()
                        noop[n].append(timed(client, f"noop{n}", args.samples * NOOP_FACTOR, f"n{n}-{r}"))
                        redis_cpu += cpu_seconds(redis_pid) - before[0]
                        pg_cpu += cluster_cpu(postmaster) - before[1]
                        producer_cpu += time.process_time() - before[2]
                        noop_tasks += args.samples * NOOP_FACTOR // args.chunk
        finally:
            for worker in workers:
                worker.stop()
            redis.stop()
            pg.destroy()
            hosts.destroy()
    burn_rates = {n: args.samples / min(t) for n, t in burn.items()}
    task_rates = {n: args.samples * NOOP_FACTOR / args.chunk / min(t) for n, t in noop.items()}
    report(f"(a) a reward burning {args.cpu_ms:g} ms of CPU per sample", burn_rates, "samples/s")
    report("(b) the same path, no work", task_rates, "tasks/s")
    path_s, work_s = 1 / task_rates[1], args.chunk * args.cpu_ms / 1000
    redis_s, pg_s, producer_s = (cpu / noop_tasks for cpu in (redis_cpu, pg_cpu, producer_cpu))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    print(f"one task on one host: {path_s * 1e3:.1f} ms of path (b) and {work_s * 1e3:.0f} ms of reward work")
    print(
        f"shared CPU per task: Redis {redis_s * 1e3:.2f} ms, PostgreSQL {pg_s * 1e3:.2f} ms (all processes),"
        f" the producer {producer_s * 1e3:.2f} ms"
    )
    per_host = 1 / (path_s + work_s)
    ceiling = min(1 / redis_s, 1 / pg_s, 1 / producer_s)
    print(
        f"fleet, each host on cores of its own: {per_host:.1f} tasks/s a host ({per_host * args.chunk:.0f}"
        f" samples/s), linear until the shared servers saturate at ~{ceiling:.0f} tasks/s"
        f" (~{ceiling / per_host:.0f} hosts; each server and one producer counted on one core)"
    )


if __name__ == "__main__":
    main()
