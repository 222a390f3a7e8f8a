"""What groups and steps (issue 16) cost batches of pointwise rewards, side by side with the code before
them: the producer's ``to_samples`` and chunking, and the worker's ``audit_rows`` and task answer, each
against the same function of a base revision (its module loaded from git), on 64-sample batches of
TRL chat rows, the variants interleaved, best of ``--repeat`` rounds; prints µs per batch and the ratio.

    .venv/bin/python bench/group_overhead.py --base 9d74f62 --repeat 7
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from rewardq.chunking import chunk_spans
from rewardq.samples import to_samples
from rewardq.storage.rows import audit_rows
from rewardq.wire.schema import Sample, TaskEnvelope
from rewardq.workers.rewards.base import Score, ScoreMeta
from rewardq.workers.runtime.persist import answer

ROOT = Path(__file__).resolve().parent.parent


def base_module(revision: str, path: str, name: str, directory: Path) -> ModuleType:
    """The module at ``path`` as of ``revision``, importing today's package for everything else."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{path}"], check=True, capture_output=True, text=True
    ).stdout
    file = directory / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def best_us(variants: dict[str, Callable[[], object]], repeat: int, number: int) -> dict[str, float]:
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat):
        for name, run in variants.items():
            best[name] = min(best[name], timeit.timeit(run, number=number) / number * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="9d74f62", help="the revision before groups and steps")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=1000)
    args = parser.parse_args()
    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "completion": [{"role": "assistant", "content": f"<think>{i}</think><answer>{2 * i}</answer>"}],
            "solution": str(2 * i),
            "id": f"s{i}",
        }
        for i in range(64)
    ]
    wire = to_samples(rows, max_record_bytes=1 << 20)
    task = TaskEnvelope(batch_id="b", run_id="r", reward="format", samples=wire)
    samples = [Sample.model_validate(w) for w in wire]
    scores = [Score.ok(1.0, meta=ScoreMeta()) for _ in samples]
    stored: list[Any] = [(1.0, "ok", None, None, None)] * 64
    with tempfile.TemporaryDirectory() as tmp:
        old_samples = base_module(args.base, "producer/samples.py", "base_samples", Path(tmp))
        old_rows = base_module(args.base, "storage/rows.py", "base_rows", Path(tmp))
        old_persist = base_module(args.base, "workers/runtime/persist.py", "base_persist", Path(tmp))
        size = 16

        def old_chunks() -> object:
            return {offset: wire[offset : offset + size] for offset in range(0, len(wire), size)}

        def new_chunks() -> object:
            return {start: wire[start:end] for start, end in chunk_spans(len(wire), size)}

        rows_kw: dict[str, Any] = dict(
            scorer="format@1:x",
            latency_ms=1.0,
            attempts=1,
            worker_host="h",
            worker_gpu=None,
            store_text=False,
        )
        pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
            "to_samples": (
                lambda: old_samples.to_samples(rows, max_record_bytes=1 << 20),
                lambda: to_samples(rows, max_record_bytes=1 << 20),
            ),
            "chunking": (old_chunks, new_chunks),
            "audit_rows": (
                lambda: old_rows.audit_rows(task, samples, scores, **rows_kw),
                lambda: audit_rows(task, samples, scores, **rows_kw),
            ),
            "answer": (
                lambda: old_persist.answer("format", 0, [s[:3] for s in stored]),
                lambda: answer("format", 0, stored),
            ),
        }
        variants = {
            f"{name} {which}": pair[i]
            for name, pair in pairs.items()
            for i, which in enumerate(("base", "now"))
        }
        best = best_us(variants, args.repeat, args.number)
    print(f"{'64 TRL chat rows':<14}{'base µs':>10}{'now µs':>10}{'now/base':>10}")
    for name in pairs:
        base, now = best[f"{name} base"], best[f"{name} now"]
        print(f"{name:<14}{base:>10.1f}{now:>10.1f}{now / base:>10.2f}")


if __name__ == "__main__":
    main()
