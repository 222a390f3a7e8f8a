"""ms-swift's own rule rewards, for rewardq's parity test; runs in the ms-swift venv, not rewardq's.

    python swift_reference.py rewards < runs.json   # ms-swift's values for each run, as JSON
    python swift_reference.py defaults              # ms-swift's defaults of the reward arguments, as JSON

A run is ``{"orm": name in swift.rewards.orm.orms, "args": {...}, "kwargs": {...}}``: ``args`` become
the ``args`` namespace ms-swift builds the reward with, ``kwargs`` its call's keyword arguments
(``completions``, ``solution``, ``response_token_ids``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from typing import Any

REWARD_ARGUMENTS = (
    "cosine_min_len_value_wrong",
    "cosine_max_len_value_wrong",
    "cosine_min_len_value_correct",
    "cosine_max_len_value_correct",
    "cosine_max_len",
    "repetition_n_grams",
    "repetition_max_penalty",
    "soft_max_length",
    "soft_cache_length",
    "max_completion_length",
)


def rewards(runs: list[dict[str, Any]]) -> list[list[float]]:
    """Each run's values from ms-swift's ORM classes, imported from ``swift/rewards/orm.py`` alone."""
    # orm.py imports InferRequest from swift.infer_engine for type hints only, and that package pulls in
    # torch and transformers (6 s instead of 0.2 s): a stand-in takes its place.
    stand_in = types.ModuleType("swift.infer_engine")
    stand_in.InferRequest = object  # type: ignore[attr-defined]
    sys.modules["swift.infer_engine"] = stand_in
    from swift.rewards.orm import orms

    values = []
    for run in runs:
        orm = orms[run["orm"]](types.SimpleNamespace(**run["args"]))
        values.append([float(v) for v in orm(**run["kwargs"])])
    return values


def defaults() -> dict[str, Any]:
    """The defaults of ms-swift's reward arguments and of ``max_completion_length``, which fills the Nones."""
    from swift.arguments.rlhf_args import RLHFArguments

    fields = {f.name: f.default for f in dataclasses.fields(RLHFArguments)}
    return {name: fields[name] for name in REWARD_ARGUMENTS}


if __name__ == "__main__":
    if sys.argv[1:] == ["rewards"]:
        print(json.dumps(rewards(json.load(sys.stdin))))
    elif sys.argv[1:] == ["defaults"]:
        print(json.dumps(defaults()))
    else:
        sys.exit(__doc__)
