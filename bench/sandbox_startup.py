"""Per-case start-up cost of the sandbox: the same trivial Python program (read a line, print it) run
in a sandbox and by a bare ``subprocess.run``, interleaved, in one run; milliseconds per case and the
ratio. A C++ binary (``--cpp``, built once with g++) shows the cost without Python's own start-up.

    .venv/bin/python bench/sandbox_startup.py [--cases 200] [--threads 1] [--cpp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rewardq.workers.process.sandbox import PYTHON_FLAGS, Limits, Sandbox, python_paths

PROGRAM = b"print(input())\n"
CPP = (
    b"#include <iostream>\n#include <string>\nint main() { std::string s; std::cin >> s; std::cout << s; }\n"
)


def timed(run: Callable[[], bytes]) -> float:
    start = time.perf_counter()
    out = run()
    assert out.strip() == b"42", out
    return (time.perf_counter() - start) * 1000


def measure(cases: int, threads: int, runs: dict[str, Callable[[], bytes]]) -> dict[str, list[float]]:
    """Each case runs every way in turn (interleaved), ``threads`` cases at once."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    with ThreadPoolExecutor(threads) as pool:
        for case in pool.map(lambda _: [(name, timed(run)) for name, run in runs.items()], range(cases)):
            for name, ms in case:
                times[name].append(ms)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpp", action="store_true")
    args = parser.parse_args()
    box = Sandbox.find()
    exe, binds = python_paths()
    limits = Limits(time_s=10)
    runs: dict[str, Callable[[], bytes]] = {
        "python, sandbox": lambda: (
            box.run(
                [exe, *PYTHON_FLAGS, "main.py"],
                files={"main.py": PROGRAM},
                stdin=b"42",
                limits=limits,
                readonly=binds,
            ).stdout
        ),
        "python, bare": lambda: (
            subprocess.run(
                [exe, *PYTHON_FLAGS, "-c", PROGRAM.decode()], input=b"42", capture_output=True, env={}
            ).stdout
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.cpp:
            binary = Path(tmp, "main")
            subprocess.run(["g++", "-O2", "-o", binary, "-x", "c++", "-"], input=CPP, check=True)
            data = binary.read_bytes()
            runs["c++, sandbox"] = lambda: (
                box.run(["./main"], files={"main": data}, stdin=b"42", limits=limits).stdout
            )
            runs["c++, bare"] = lambda: (
                subprocess.run([binary], input=b"42", capture_output=True, env={}).stdout
            )
        times = measure(args.cases, args.threads, runs)
    print(f"{args.cases} cases, {args.threads} thread(s), load average {os.getloadavg()}")
    print(f"{'way':<18}{'p50 ms':>9}{'p90 ms':>9}{'mean ms':>9}")
    for name, ms in times.items():
        p90 = statistics.quantiles(ms, n=10)[-1]
        print(f"{name:<18}{statistics.median(ms):>9.1f}{p90:>9.1f}{statistics.fmean(ms):>9.1f}")
    for lang in ("python", "c++"):
        if f"{lang}, bare" in times:
            box_ms, bare_ms = (statistics.median(times[f"{lang}, {way}"]) for way in ("sandbox", "bare"))
            print(
                f"{lang}: sandbox / bare p50 = {box_ms / bare_ms:.2f}x (+{box_ms - bare_ms:.1f} ms per case)"
            )


if __name__ == "__main__":
    main()
