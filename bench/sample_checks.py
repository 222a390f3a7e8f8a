"""The producer's sample checks: one call of the schema's validator on a batch of plain dicts
(``samples_checker``, what ``to_samples`` uses) against building a Sample model per row and against one
``TypeAdapter(list[Sample])`` call; and ``to_samples`` end to end (reshaping, sizes, checks). 64-row
batches of three row shapes, the variants interleaved, best of ``--repeat`` rounds; prints µs per batch
and each as a ratio to the schema checker.

    .venv/bin/python bench/sample_checks.py --repeat 5
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from rewardq.samples import to_samples
from rewardq.wire.schema import Sample, samples_checker

SHAPES: dict[str, Callable[[int], dict[str, Any]]] = {
    "TRL strings": lambda i: {"prompt": f"q{i}", "completion": f"<think>{i}</think><answer>{i}</answer>"},
    "TRL chat": lambda i: {
        "prompt": [{"role": "user", "content": f"q{i}"}],
        "completion": [{"role": "assistant", "content": f"<think>{i}</think><answer>{i}</answer>"}],
        "solution": str(i),
    },
    "ms-swift messages": lambda i: {
        "messages": [
            {"role": "system", "content": "think"},
            {"role": "user", "content": f"q{i}"},
            {"role": "assistant", "content": f"<think>{i}</think>"},
        ],
        "solution": str(i),
    },
}


def measure(rows: list[dict[str, Any]], repeat: int, number: int) -> dict[str, float]:
    """Best µs per batch of each variant, the variants interleaved in every round."""
    adapter = TypeAdapter(list[Sample])
    checker = samples_checker()
    wires = to_samples(rows, max_record_bytes=1 << 20)
    variants: dict[str, Callable[[], object]] = {
        "schema checker": lambda: checker.validate_python(wires, strict=True),
        "list adapter": lambda: adapter.validate_python(wires, strict=True),
        "model per row": lambda: [Sample.model_validate(w) for w in wires],
        "to_samples": lambda: to_samples(rows, max_record_bytes=1 << 20),
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat):
        for name, run in variants.items():
            best[name] = min(best[name], timeit.timeit(run, number=number) / number * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    header_printed = False
    for shape, make in SHAPES.items():
        best = measure([make(i) for i in range(64)], args.repeat, args.number)
        if not header_printed:
            print(f"{'rows (64 per batch)':<20}" + "".join(f"{name:>18}" for name in best))
            header_printed = True
        base = best["schema checker"]
        print(f"{shape:<20}" + "".join(f"{f'{us:.1f} ({us / base:.2f}x)':>18}" for us in best.values()))


if __name__ == "__main__":
    main()
