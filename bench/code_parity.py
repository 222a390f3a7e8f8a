"""rewardq's ``code`` reward against verl's ``prime_code`` on the same hand-written APPS-style problems and
completions (right, wrong, partial, call-based, floats, a missing import, a crash, a time-out): one table of
values, prime_code's ``continuous=False`` (all or nothing) and ``continuous=True`` (share of the first ten
cases, what verl's ``default_compute_score`` uses) beside rewardq's ``all_or_nothing = true`` and the default
share. verl is not a dependency: point
``--verl`` at a checkout (only ``verl/utils/reward_score/prime_code`` is read); its ``pyext`` is replaced by
a shim doing what ``RuntimeModule.from_string`` does, since pyext does not import on Python 3.11.

    git -C <verl checkout> archive HEAD verl/utils/reward_score/prime_code | tar -x -C /tmp/verl
    .venv/bin/python bench/code_parity.py --verl /tmp/verl
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path
from typing import Any

from rewardq import Settings
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.code.reward import CodeReward

ADD = {"inputs": ["1 2\n", "10 20\n", "-5 5\n", "100 1\n"], "outputs": ["3\n", "30\n", "0\n", "101\n"]}
DIV = {"inputs": ["1 3\n", "2 7\n"], "outputs": ["0.3333333333\n", "0.2857142857\n"]}
# Call-based, as APPS writes it (argument lists, return values wrapped in a list) and as prime_code's data
# does (one JSON value per line, the return value's JSON).
CALL = {
    "fn_name": "pair_sum",
    "inputs": [[[1, 2, 3], 4], [[5, 5], 10], [[1], 3]],
    "outputs": [[[0, 2]], [[0, 1]], [None]],
}
CALL_PRIME = {
    "fn_name": "pair_sum",
    "inputs": ["[1, 2, 3]\n4", "[5, 5]\n10", "[1]\n3"],
    "outputs": ["[0, 2]", "[0, 1]", "null"],
}
PAIR_SUM = (
    "```python\ndef pair_sum(xs, t):\n    seen = {}\n    for i, x in enumerate(xs):\n"
    "        if t - x in seen:\n            return [seen[t - x], i]\n        seen[x] = i\n"
    "    return None\n```"
)
PAIR_TUPLE = (
    "```python\ndef pair_sum(xs, t):\n    for i in range(len(xs)):\n        for j in range(i + 1, len(xs)):\n"
    "            if xs[i] + xs[j] == t:\n                return (i, j)\n```"
)
PAIR_WRONG = "```python\ndef pair_sum(xs, t):\n    return [0, 1]\n```"
LINES = {"inputs": ["3\n"], "outputs": ["1\n2\n3\n"]}

PROBLEMS: list[tuple[str, dict[str, Any], str]] = [
    ("a+b right", ADD, "```python\na, b = map(int, input().split())\nprint(a + b)\n```"),
    ("a+b wrong", ADD, "```python\na, b = map(int, input().split())\nprint(a * b)\n```"),
    ("a+b partial", ADD, "```python\na, b = map(int, input().split())\nprint(a + b if a > 0 else 7)\n```"),
    (
        "a+b __main__",
        ADD,
        "```python\ndef main():\n    a, b = map(int, input().split())\n    print(a + b)\n\n"
        "if __name__ == '__main__':\n    main()\n```",
    ),
    ("a+b no import", ADD, "```python\nprint(sum(map(int, stdin.readline().split())))\n```"),
    (
        "a+b crash on one",
        ADD,
        "```python\na, b = map(int, input().split())\nprint(a + b if b != 5 else 1 // 0)\n```",
    ),
    ("div 6 digits", DIV, "```python\na, b = map(int, input().split())\nprint(f'{a / b:.6f}')\n```"),
    ("div 3 digits", DIV, "```python\na, b = map(int, input().split())\nprint(f'{a / b:.3f}')\n```"),
    ("lines spaced", LINES, "```python\nfor i in range(int(input())):\n    print(' ', i + 1, ' ')\n```"),
    ("lines on one", LINES, "```python\nprint(*range(1, int(input()) + 1))\n```"),
    ("call right (APPS)", CALL, PAIR_SUM),
    ("call tuple (APPS)", CALL, PAIR_TUPLE),
    ("call wrong (APPS)", CALL, PAIR_WRONG),
    ("call right (prime)", CALL_PRIME, PAIR_SUM),
    ("call tuple (prime)", CALL_PRIME, PAIR_TUPLE),
    ("call wrong (prime)", CALL_PRIME, PAIR_WRONG),
    ("time-out", {"inputs": ["1\n"], "outputs": ["1\n"]}, "```python\nwhile True:\n    pass\n```"),
]


def prime_code(verl: Path) -> Any:
    """verl's prime_code module, imported from a checkout, with a pyext shim."""
    pyext = types.ModuleType("pyext")

    class RuntimeModule:
        @staticmethod
        def from_string(name: str, doc: str, code: str) -> types.ModuleType:
            module = types.ModuleType(name, doc)
            exec(code, module.__dict__)
            return module

    pyext.RuntimeModule = RuntimeModule  # type: ignore[attr-defined]
    sys.modules["pyext"] = pyext
    sys.path.insert(0, str(verl / "verl" / "utils" / "reward_score"))
    import prime_code as module

    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verl", type=Path, required=True, help="a verl checkout (or its prime_code part)")
    args = parser.parse_args()
    verl = prime_code(args.verl)
    resources = WorkerResources(Settings.from_env({}))
    share = CodeReward("share", CodeReward.Options(time_limit=5))
    whole = CodeReward("whole", CodeReward.Options(time_limit=5, all_or_nothing=True))
    for reward in (share, whole):
        reward.setup(resources)
    samples = [Sample(completion=c, columns={"tests": json.dumps(t)}) for _, t, c in PROBLEMS]
    shares, wholes = share.score(samples), whole.score(samples)
    print("| problem | prime_code | rewardq all_or_nothing | prime_code continuous | rewardq share |")
    print("|---|---|---|---|---|")
    for (name, tests, completion), s, w in zip(PROBLEMS, shares, wholes, strict=True):
        try:
            exact = f"{float(verl.compute_score(completion, json.dumps(tests), continuous=False)[0]):.2f}"
        except UnboundLocalError:  # prime_code's continuous=False path never sets its value on a failure
            exact = "raises"
        continuous = float(verl.compute_score(completion, json.dumps(tests), continuous=True)[0])
        print(f"| {name} | {exact} | {w.value:.2f} | {continuous:.2f} | {s.value:.2f} |")
    resources.close()


if __name__ == "__main__":
    main()
