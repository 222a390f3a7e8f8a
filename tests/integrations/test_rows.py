"""How the adapters turn a trainer's keyword arguments into rewardq rows, and what they leave out."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rewardq import InvalidInputError
from rewardq.integrations.batches import batch_key, resolve_run_id, step_of
from rewardq.integrations.swift import swift_rows
from rewardq.integrations.trl import trl_rows
from rewardq.integrations.verl import verl_row


@dataclass
class State:
    global_step: int


def test_trl_rows_send_prompts_completions_ids_and_json_columns_only() -> None:
    prompt = [{"role": "user", "content": "2+2?"}]
    completion = [{"role": "assistant", "content": "4"}]
    rows = trl_rows(
        {
            "prompts": [prompt, prompt],
            "completions": [completion, completion],
            "completion_ids": [[1, 2], [3]],
            "solution": ["4", "5"],
            "image": [object(), object()],  # not JSON: not sent
            "short": ["only one"],  # not one per sample: not sent
            "trainer_state": State(3),
            "log_metric": lambda name, value: None,
        }
    )
    assert rows == [
        {"prompt": prompt, "completion": completion, "completion_ids": [1, 2], "solution": "4"},
        {"prompt": prompt, "completion": completion, "completion_ids": [3], "solution": "5"},
    ]


def test_swift_rows_take_the_prompt_from_the_messages_before_the_completion() -> None:
    messages = [[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]]
    rows = swift_rows(["4"], {"messages": messages, "solution": ["4"], "trainer_state": State(0)})
    assert rows == [{"prompt": [{"role": "user", "content": "2+2?"}], "completion": "4", "solution": "4"}]


def test_verl_rows_keep_the_json_parts_of_extra_info() -> None:
    row = verl_row("gsm8k", "4", np.str_("4"), {"index": np.int64(3), "obj": object(), "tags": ["a"]})
    assert row == {
        "completion": "4",
        "solution": "4",
        "data_source": "gsm8k",
        "extra_info": {"index": 3, "tags": ["a"]},
        "group": "gsm8k#3",  # the dataset row: the generations of one prompt share it
    }
    with_uid = verl_row("gsm8k", "4", "4", {"index": 3, "uid": np.str_("9f0c")})
    assert with_uid["group"] == "9f0c"


def test_the_batch_key_follows_step_and_content() -> None:
    assert batch_key(1, ["p"], ["c"]) == batch_key(1, ["p"], ["c"])
    assert batch_key(1, ["p"], ["c"]) != batch_key(2, ["p"], ["c"])
    assert batch_key(1, ["p"], ["c"]) != batch_key(1, ["p"], ["d"])
    assert step_of(State(7)) == 7 and step_of(None) is None


def test_a_run_id_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInputError, match="field 'run_id': missing: pass run_id"):
        resolve_run_id(None)
    monkeypatch.setenv("REWARDQ_RUN_ID", "from-env")
    assert resolve_run_id(None) == "from-env"
    assert resolve_run_id("given") == "given"


def test_the_trl_options_reach_the_shared_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rewardq import RewardClient, Settings

    monkeypatch.delenv("REWARDQ_RUN_ID", raising=False)
    client = RewardClient(Settings.from_env({"REWARDQ_HOME": str(tmp_path)}))  # never started
    for build in (client.reward_func, client.reward_funcs):
        with pytest.raises(InvalidInputError, match="field 'run_id': missing"):
            build(["format"])
        with pytest.raises(TypeError, match="window_ms"):
            build(["format"], run_id="r", window_ms=5)
    funcs = client.reward_funcs(["format", "repetition"], run_id="r", asynchronous=True, timeout=1.0)
    assert [f.__name__ for f in funcs] == ["format", "repetition"]
    assert all(inspect.iscoroutinefunction(f) for f in funcs)
    client.close()


def test_trl_callables_refuse_prompts_and_completions_of_different_lengths(tmp_path: Path) -> None:
    from rewardq import RewardClient, Settings

    client = RewardClient(Settings.from_env({"REWARDQ_HOME": str(tmp_path)}))  # refused before it starts
    for func in [*client.reward_funcs(["format"], run_id="r"), client.reward_func(["format"], run_id="r")]:
        with pytest.raises(InvalidInputError) as info:
            func(prompts=["p1", "p2"], completions=["c1"])
        assert "field 'prompts': 2 entries for 1 completions" in str(info.value)
    with pytest.raises(InvalidInputError) as info:
        client.reward_func(["format"], run_id="r")(
            prompts=["p"], completions=["c"], completion_ids=[[1], [2]]
        )
    assert "field 'completion_ids': 2 entries for 1 completions" in str(info.value)
    client.close()


def test_the_swift_orm_refuses_messages_and_completions_of_different_lengths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    from rewardq.integrations.swift import orm

    class ORM:  # ms-swift's base class (swift.rewards.ORM): stores its arguments
        def __init__(self, args: Any = None, **kwargs: Any) -> None:
            self.args = args

    monkeypatch.setitem(sys.modules, "swift", types.ModuleType("swift"))
    monkeypatch.setitem(sys.modules, "swift.rewards", types.SimpleNamespace(ORM=ORM))
    monkeypatch.setenv("REWARDQ_HOME", str(tmp_path))
    scorer = orm(["format"], run_id="r")()
    turns = [{"role": "user", "content": "q"}]
    with pytest.raises(InvalidInputError) as info:
        scorer(["c1", "c2", "c3"], messages=[turns, turns])
    assert "field 'messages': 2 entries for 3 completions" in str(info.value)


def test_weights_given_to_reward_funcs_are_warned_about_with_the_trl_setting_that_applies_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from rewardq import RewardClient, Settings

    client = RewardClient(Settings.from_env({"REWARDQ_HOME": str(tmp_path)}))
    with caplog.at_level(logging.WARNING, logger="rewardq.integrations.trl"):
        client.reward_funcs(["accuracy", "format"], run_id="r")
        client.reward_funcs({"accuracy": 1.0, "format": 1.0}, run_id="r")
        assert not caplog.records
        client.reward_funcs({"accuracy": 1.0, "format": 0.5}, run_id="r")
    [record] = caplog.records
    assert "GRPOConfig(reward_weights=[1.0, 0.5])" in record.getMessage()
    client.close()
