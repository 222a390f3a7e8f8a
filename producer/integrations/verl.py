"""rewardq as verl's custom reward function (``custom_reward_function.path/name``).

verl calls ``compute_score`` in one of two ways, with ``custom_reward_function.reward_kwargs`` added
as keyword arguments (here: ``rewards``, and optionally ``run_id``, ``timeout``, ``missing``,
``window_ms``):

- per sample (the naive and dapo reward managers, and the reward loop, which runs many such calls at
  once in threads): ``compute_score(data_source=, solution_str=, ground_truth=, extra_info=)`` → a float;
- per batch (``reward_model.reward_manager=batch``): ``compute_score(data_sources=, solution_strs=,
  ground_truths=, extra_infos=)`` → a list of floats, one submission.

Per-sample calls are coalesced (:mod:`rewardq.integrations.coalesce`, window ``window_ms``), so
concurrent callers share a round trip. (verl's older naive manager calls one sample at a time and waits
for each: coalescing cannot help there; use ``reward_manager=batch`` or the reward loop.)
A sample whose rewards all lack a value gets ``missing`` (default NaN: a failed score is never a silent
0.0; set ``missing: 0.0`` in reward_kwargs to train through failures knowingly).

Groups: a sample's group (for group-level rewards) is ``extra_info["uid"]`` where the reward manager puts
verl's ``uid`` there, else its data source and ``extra_info["index"]`` (the dataset row, which verl's
example preprocessors set): verl passes no prompt, so the prompt cannot group them.

Steps: when a requested reward has steps (:func:`rewardq.catalog.step_rewards`), each sample's answer is
a dict: ``score`` (the weighted total) and, per such reward, ``<name>_steps`` (its step scores, [] where
it has none) and ``<name>_step_ends``, which verl gathers into ``reward_extra_info``. The ends are
character offsets in ``solution_str``, or token indices in its tokens when ``tokenizer`` (a path or hub
name, loaded with transformers) is given in reward_kwargs: the response re-encoded with it, which are
verl's response ids wherever decoding and encoding round-trip (:mod:`rewardq.steps`).

verl imports the module by path and calls a plain function, so the clients and batchers live in a
small per-process table keyed by the settings they were built with, created on first call.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from rewardq.catalog import check_weights, step_rewards
from rewardq.client import RewardClient
from rewardq.integrations.batches import resolve_run_id
from rewardq.integrations.coalesce import DEFAULT_WINDOW_MS, Coalescer, Slot
from rewardq.results import ScoreResult
from rewardq.steps import decoder, token_ends
from rewardq.wire.errors import InvalidInputError, Problem
from rewardq.wire.settings import Settings

log = logging.getLogger(__name__)

Rewards = Mapping[str, float] | Sequence[str] | str


def compute_score(
    data_source: Any = None,
    solution_str: str | None = None,
    ground_truth: Any = None,
    extra_info: Any = None,
    *,
    data_sources: Sequence[Any] | None = None,
    solution_strs: Sequence[str] | None = None,
    ground_truths: Sequence[Any] | None = None,
    extra_infos: Sequence[Any] | None = None,
    rewards: Rewards | None = None,
    run_id: str | None = None,
    timeout: float | None = None,
    missing: float = math.nan,
    window_ms: float = DEFAULT_WINDOW_MS,
    tokenizer: str | None = None,
    **_ignored: Any,
) -> Answer | list[Answer]:
    """verl's reward function: one sample's weighted total, or a batch's (lists in, list out); a dict
    with the total as ``score`` and the step scores beside it where a reward has steps."""
    scorer = _scorer(rewards, run_id, timeout, window_ms, tokenizer)
    if solution_strs is not None:
        size = len(solution_strs)
        rows = [
            verl_row(
                _at(data_sources, i, size, "data_sources"),
                solution_strs[i],
                _at(ground_truths, i, size, "ground_truths"),
                _at(extra_infos, i, size, "extra_infos"),
            )
            for i in range(size)
        ]
        result = scorer.score_batch(rows)
        return [scorer.answer(result, i, rows[i], missing) for i in range(size)]
    if solution_str is None:
        raise InvalidInputError([Problem("solution_str", "missing: verl passes the decoded completion")])
    row = verl_row(data_source, solution_str, ground_truth, extra_info)
    slot = scorer.score_one(row)
    return scorer.answer(slot.result, slot.offset, row, missing)


Answer = float | dict[str, Any]


def verl_row(data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any) -> dict[str, Any]:
    """One verl sample as a rewardq row: the completion, ``solution`` (the ground truth), its group and
    the rest."""
    row: dict[str, Any] = {"completion": solution_str, "solution": _plain(ground_truth)}
    if data_source is not None:
        row["data_source"] = _plain(data_source)
    info = _jsonable(extra_info)
    if info:
        row["extra_info"] = info
    if isinstance(info, Mapping) and info.get("uid") is not None:
        row["group"] = str(info["uid"])
    elif isinstance(info, Mapping) and info.get("index") is not None:
        row["group"] = f"{row.get('data_source')}#{info['index']}"
    return row


def _at(values: Sequence[Any] | None, i: int, size: int, name: str) -> Any:
    if values is None:
        return None
    if len(values) != size:
        raise InvalidInputError([Problem(name, f"has {len(values)} items for {size} solution_strs")])
    return values[i]


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (verl's non-tensor batch) as Python values."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def _jsonable(value: Any) -> Any:
    """``value`` if it is JSON; for a mapping, its JSON entries; otherwise None (not sent)."""
    value = _plain(value)
    try:
        orjson.dumps(value)
        return value
    except TypeError:
        if isinstance(value, Mapping):
            return {str(k): v for k, v in ((k, _jsonable(v)) for k, v in value.items()) if v is not None}
        return None


class VerlScorer:
    """A client for one (rewards, run id) and a coalescer for per-sample calls."""

    def __init__(
        self,
        client: RewardClient,
        weights: dict[str, float],
        run_id: str,
        timeout: float,
        window: float,
        tokenizer: Any = None,
    ) -> None:
        self.client = client
        self.weights = weights
        self.run_id = run_id
        self.timeout = timeout
        self.stepped = sorted(step_rewards(client.settings.rewards).intersection(weights))
        self.tokenizer = tokenizer  # a transformers tokenizer: step ends as token indices
        self._coalescer = Coalescer(self.score_batch, window, name="rewardq-verl")

    def score_batch(self, rows: Sequence[Mapping[str, Any]]) -> ScoreResult:
        handle = self.client.submit(rows, self.weights, run_id=self.run_id)
        return handle.get(timeout=self.timeout)

    def answer(self, result: ScoreResult, i: int, row: Mapping[str, Any], missing: float) -> Answer:
        """Sample ``i``'s answer to verl: its total, in a dict with its steps where a reward has them."""
        total = result.totals[i]
        score = missing if total is None else total
        if not self.stepped:
            return score
        out: dict[str, Any] = {"score": score}
        ids: list[int] | None = None  # the completion's tokens, encoded once for every stepped reward
        for name in self.stepped:
            ends = result.step_ends[name][i] or []
            if self.tokenizer is not None and ends:
                if ids is None:
                    ids = self.tokenizer.encode(row["completion"], add_special_tokens=False)
                ends = token_ends(ends, ids, decoder(self.tokenizer))
            out[f"{name}_steps"] = result.steps[name][i] or []
            out[f"{name}_step_ends"] = ends
        return out

    def score_one(self, row: dict[str, Any]) -> Slot:
        """Queue one sample for the coalescer and wait for its batch's result and its place in it."""
        return self._coalescer.submit([row]).result()


_scorers: dict[tuple[Any, ...], VerlScorer] = {}
_scorers_lock = threading.Lock()


def _scorer(
    rewards: Rewards | None,
    run_id: str | None,
    timeout: float | None,
    window_ms: float,
    tokenizer: str | None,
) -> VerlScorer:
    if rewards is None:
        hint = "missing: set custom_reward_function.reward_kwargs.rewards, e.g. {accuracy: 1.0}"
        raise InvalidInputError([Problem("rewards", hint)])
    if isinstance(rewards, Mapping):
        rewards = {str(k): v for k, v in rewards.items()}
    elif not isinstance(rewards, str):
        rewards = [str(r) for r in rewards]
    resolved_run = resolve_run_id(run_id)
    settings = Settings.from_env()
    key = (settings, orjson.dumps(rewards), resolved_run, timeout, window_ms, tokenizer)
    with _scorers_lock:
        scorer = _scorers.get(key)
        if scorer is None:
            client = RewardClient(settings)
            weights = check_weights(rewards, client.known_rewards)
            wait = client.settings.timeout if timeout is None else timeout
            scorer = _scorers[key] = VerlScorer(
                client, weights, resolved_run, wait, window_ms / 1000, _tokenizer(tokenizer)
            )
        return scorer


def _tokenizer(name: str | None) -> Any:
    """The tokenizer named in reward_kwargs (transformers, which verl installs), or None."""
    if name is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)
