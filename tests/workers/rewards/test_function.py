"""The ``function`` kind with the trainers' real reward functions: TRL's own ``trl.rewards``, verl's
scorers (``verl.utils.reward_score``) and an ms-swift-shaped ORM class. Values must equal calling the
function in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rewardq import ConfigError, RewardClient
from rewardq.samples import to_sample
from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.rewards.functions.function import FunctionReward
from tests.conftest import RedisServer, WorkerProcess


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def rewards_file(directory: Path, **tables: dict[str, Any]) -> Path:
    lines = []
    for name, table in tables.items():
        lines.append(f"[rewards.{name}]")
        lines.append('kind = "function"')
        lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
    path = directory / "rewards.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def samples(*rows: dict[str, Any]) -> list[Sample]:
    return [Sample.model_validate(to_sample(r)) for r in rows]


FUNCTIONS = """
import asyncio
import math


def constant(completions, **kwargs):
    return [0.5 for _ in completions]


async def async_length(prompts, completions, completion_ids, trainer_state, log_extra, log_metric, **kwargs):
    await asyncio.sleep(0)
    log_metric("seen", len(completions))
    log_extra("lengths", [len(c) for c in completions])
    return [float(len(c)) for c in completions]


def explodes_on_boom(completions, **kwargs):
    if any("boom" in c for c in completions):
        raise ValueError("boom in a completion")
    return [1.0 for _ in completions]


def odd_values(completions, **kwargs):
    table = {"none": None, "nan": math.nan, "text": "high", "inf": math.inf, "int": 3, "bool": True}
    return [table[c] for c in completions]


def wrong_length(completions, **kwargs):
    return [1.0]


def seen_kwargs(prompts, completions, completion_ids, **kwargs):
    return [float(len(kwargs)) for _ in completions]


def echo_columns(completions, tag, completion_ids, **kwargs):
    return [float(len(ids or [])) + (0.5 if t else 0.0) for ids, t in zip(completion_ids, tag)]
"""


@pytest.fixture
def resources() -> Iterator[WorkerResources]:
    res = WorkerResources(Settings.from_env({}))
    yield res
    res.close()


def build(tmp_path: Path, resources: WorkerResources, **table: Any) -> FunctionReward:
    (tmp_path / "my_rewards.py").write_text(FUNCTIONS)
    config = RewardsConfig.load(rewards_file(tmp_path, r=table))
    reward = config.build("r")
    assert isinstance(reward, FunctionReward)
    reward.setup(resources)
    return reward


def values(scores: list[Score]) -> list[float | None]:
    return [s.value for s in scores]


# --- TRL -------------------------------------------------------------------------------------------

MATH_ROWS = [
    {
        "prompt": [{"role": "user", "content": "1/3?"}],
        "completion": [{"role": "assistant", "content": r"It is \boxed{\frac{1}{3}}"}],
        "solution": r"\frac{1}{3}",
    },
    {
        "prompt": [{"role": "user", "content": "1/3?"}],
        "completion": [{"role": "assistant", "content": r"It is \boxed{\frac{1}{2}}"}],
        "solution": r"\frac{1}{3}",
    },
    {  # a gold answer math_verify cannot parse: TRL's accuracy_reward returns None
        "prompt": [{"role": "user", "content": "?"}],
        "completion": [{"role": "assistant", "content": r"\boxed{1}"}],
        "solution": "no answer here",
    },
]


def test_trl_accuracy_reward_equals_calling_it_in_process(tmp_path: Path, resources: WorkerResources) -> None:
    from trl.rewards import accuracy_reward

    reward = build(tmp_path, resources, function="trl.rewards:accuracy_reward", convention="trl")
    scores = reward.score(samples(*MATH_ROWS))
    expected = accuracy_reward(
        completions=[r["completion"] for r in MATH_ROWS], solution=[r["solution"] for r in MATH_ROWS]
    )
    assert expected == [1.0, 0.0, None]
    assert values(scores) == expected
    assert [s.status for s in scores] == ["ok", "ok", "unscorable"]


def test_trl_think_format_and_a_factory_built_with_init(tmp_path: Path, resources: WorkerResources) -> None:
    from trl.rewards import get_soft_overlong_punishment, think_format_reward

    rows = [
        {"prompt": "q", "completion": "<think>a</think> b", "completion_ids": [1] * 90},
        {"prompt": "q", "completion": "no think", "completion_ids": [1] * 10},
    ]
    fmt = build(tmp_path, resources, function="trl.rewards:think_format_reward", convention="trl")
    # A string completion of a chat prompt reaches TRL functions as [{"role": "assistant", ...}].
    chat_rows = [{**r, "prompt": [{"role": "user", "content": "q"}]} for r in rows]
    completions = [[{"role": "assistant", "content": r["completion"]}] for r in rows]
    assert values(fmt.score(samples(*chat_rows))) == think_format_reward(completions) == [1.0, 0.0]

    overlong = build(
        tmp_path,
        resources,
        function="trl.rewards:get_soft_overlong_punishment",
        convention="trl",
        init={"max_completion_len": 100, "soft_punish_cache": 20},
    )
    expected = get_soft_overlong_punishment(100, 20)([r["completion_ids"] for r in rows])
    assert values(overlong.score(samples(*rows))) == expected
    assert expected[0] < 0.0 and expected[1] == 0.0


def test_trl_call_passes_what_the_trainer_passes(tmp_path: Path, resources: WorkerResources) -> None:
    rows = [
        {"prompt": "a", "completion": "xy", "completion_ids": [1, 2], "tag": 1},
        {"prompt": "b", "completion": "z", "tag": 0},  # no completion_ids: None, as a missing column is
    ]
    reward = build(tmp_path, resources, function="my_rewards.py:echo_columns", convention="trl")
    assert values(reward.score(samples(*rows))) == [2.5, 0.0]
    # Beyond prompts, completions and completion_ids: the column, trainer_state, log_extra, log_metric.
    counted = build(tmp_path, resources, function="my_rewards.py:seen_kwargs", convention="trl")
    assert values(counted.score(samples(*rows))) == [4.0, 4.0]


def test_an_async_function_runs_on_the_workers_loop(tmp_path: Path, resources: WorkerResources) -> None:
    reward = build(tmp_path, resources, function="my_rewards.py:async_length", convention="trl")
    assert values(reward.score(samples({"completion": "abc"}, {"completion": "a"}))) == [3.0, 1.0]


def test_none_nan_and_non_numbers(tmp_path: Path, resources: WorkerResources) -> None:
    reward = build(tmp_path, resources, function="my_rewards.py:odd_values", convention="trl")
    scores = reward.score(
        samples(*({"completion": c} for c in ["none", "nan", "text", "inf", "int", "bool"]))
    )
    assert [s.status for s in scores] == ["unscorable", "unscorable", "error", "error", "ok", "ok"]
    assert values(scores)[4:] == [3.0, 1.0]
    assert "returned str, not a number" in (scores[2].error or "")


def test_a_batch_that_raises_is_retried_sample_by_sample(tmp_path: Path, resources: WorkerResources) -> None:
    rows = samples({"completion": "fine"}, {"completion": "boom"}, {"completion": "also fine"})
    reward = build(tmp_path, resources, function="my_rewards.py:explodes_on_boom", convention="trl")
    scores = reward.score(rows)
    assert [s.status for s in scores] == ["ok", "error", "ok"]
    assert scores[1].error == "ValueError: boom in a completion"

    whole = build(
        tmp_path, resources, function="my_rewards.py:explodes_on_boom", convention="trl", isolate_errors=False
    )
    assert [s.error for s in whole.score(rows)] == ["ValueError: boom in a completion"] * 3


def test_a_wrong_number_of_values_fails_the_batch(tmp_path: Path, resources: WorkerResources) -> None:
    reward = build(tmp_path, resources, function="my_rewards.py:wrong_length", convention="trl")
    scores = reward.score(samples({"completion": "a"}, {"completion": "b"}))
    assert [s.error for s in scores] == ["the function returned 1 values for 2 samples"] * 2


# --- ms-swift --------------------------------------------------------------------------------------

# An ORM in the shape of ms-swift's ``swift.rewards.orm`` (ms-swift itself pins transformers < 5.20 and
# cannot be imported next to this project's transformers): built once as ``cls(args=GRPOConfig)`` or
# ``cls()``, called as ``orm(completions, **reward_kwargs)`` with ``messages`` and columns as lists.
SWIFT_ORMS = """
import asyncio


class ORM:
    def __init__(self, args=None, **kwargs):
        self.args = args

    def __call__(self, **kwargs):
        raise NotImplementedError


class MatchSolution(ORM):
    def __init__(self, args=None, **kwargs):
        super().__init__(args, **kwargs)
        self.bonus = args.match_bonus if args is not None else 1.0

    def __call__(self, completions, solution, messages, trainer_state=None, **kwargs):
        for m, c in zip(messages, completions):
            assert m[-1] == {"role": "assistant", "content": c}
        return [self.bonus if s is not None and s in c else (None if s is None else 0.0)
                for c, s in zip(completions, solution)]


class AsyncLength(ORM):
    async def __call__(self, completions, **kwargs):
        await asyncio.sleep(0)
        return [float(len(c)) for c in completions]


orms = {"match": MatchSolution, "async_length": AsyncLength}
"""


def test_swift_orm_class_is_built_and_called_as_ms_swift_does(
    tmp_path: Path, resources: WorkerResources
) -> None:
    (tmp_path / "swift_plugin.py").write_text(SWIFT_ORMS)
    rows = [
        {
            "messages": [{"role": "user", "content": "2+2"}, {"role": "assistant", "content": "it is 4"}],
            "solution": "4",
        },
        {"prompt": "2+3", "completion": "it is 6", "solution": "5"},
        {"prompt": "?", "completion": "x"},  # no solution column: None, as ms-swift batches a missing key
    ]
    config = RewardsConfig.load(
        rewards_file(
            tmp_path,
            plain={"function": "swift_plugin.py:MatchSolution", "convention": "swift"},
            tuned={
                "function": "swift_plugin.py:MatchSolution",
                "convention": "swift",
                "init": {"match_bonus": 2.0},
            },
            lengths={
                "function": "swift_plugin.py:orms.async_length",
                "convention": "swift",
            },  # a registry entry
        )
    )
    scored = {}
    for name in ("plain", "tuned", "lengths"):
        reward = config.build(name)
        reward.setup(resources)
        scored[name] = values(reward.score(samples(*rows)))
    assert scored == {
        "plain": [1.0, 0.0, None],
        "tuned": [2.0, 0.0, None],
        "lengths": [7.0, 7.0, 1.0],
    }


# --- verl ------------------------------------------------------------------------------------------


def _verl_scorer() -> Any:
    """verl's default_compute_score, imported the way the convention imports it (stubs if needed)."""
    from rewardq.workers.rewards.functions.verl import stub_verl

    try:
        from verl.utils.reward_score import default_compute_score
    except ImportError:
        assert stub_verl()
        from verl.utils.reward_score import default_compute_score
    return default_compute_score


VERL_ROWS = [
    {
        "completion": "so the answer is #### 72",
        "data_source": "openai/gsm8k",
        "reward_model": {"ground_truth": "72"},
    },
    {"completion": "#### 71", "data_source": "openai/gsm8k", "reward_model": {"ground_truth": "72"}},
    {
        "completion": r"so \boxed{\frac{1}{2}}",
        "data_source": "lighteval/MATH",
        "ground_truth": r"\frac{1}{2}",
    },
    {"completion": "Answer: 34", "data_source": "math_dapo", "ground_truth": "34"},
    {"completion": "x", "data_source": "openai/gsm8k"},  # no ground truth
    {"completion": "x", "data_source": "no/such-dataset", "ground_truth": "1"},
]


@pytest.mark.usefixtures("verl_site")
def test_verl_default_compute_score_equals_calling_it_in_process(
    tmp_path: Path, resources: WorkerResources
) -> None:
    default_compute_score = _verl_scorer()
    reward = build(
        tmp_path, resources, function="verl.utils.reward_score:default_compute_score", convention="verl"
    )
    scores = reward.score(samples(*VERL_ROWS))
    for row, score in list(zip(VERL_ROWS, scores, strict=True))[:4]:
        gt = row.get("ground_truth") or row["reward_model"]["ground_truth"]
        result = default_compute_score(
            data_source=row["data_source"], solution_str=row["completion"], ground_truth=gt, extra_info={}
        )
        expected = result["score"] if isinstance(result, dict) else result
        assert score.status == "ok" and score.value == float(expected)
    assert values(scores)[:4] == [1.0, 0.0, 1.0, 1.0]
    assert scores[3].raw is not None and '"acc":true' in scores[3].raw  # math_dapo's dict, kept for the audit
    assert scores[4].status == "unscorable" and "no ground truth" in (scores[4].error or "")
    assert scores[5].status == "error" and (scores[5].error or "").startswith("NotImplementedError")


VERL_BATCH = """
def compute_score(data_sources, solution_strs, ground_truths, extra_infos, bonus=0.0, **kwargs):
    rows = zip(data_sources, solution_strs, ground_truths)
    return [{"score": float(s.endswith(g)) + bonus, "source": d} for d, s, g in rows]
"""


def test_verl_batch_manager_convention_and_reward_kwargs(tmp_path: Path, resources: WorkerResources) -> None:
    (tmp_path / "verl_batch.py").write_text(VERL_BATCH)
    reward = build(
        tmp_path,
        resources,
        function="verl_batch.py:compute_score",
        convention="verl",
        batch=True,
        data_source="mine",
        init={"bonus": 0.5},
    )
    rows = [
        {"completion": "a 1", "ground_truth": "1"},
        {"completion": "b"},
        {"completion": "c 2", "ground_truth": "3"},
    ]
    scores = reward.score(samples(*rows))
    assert values(scores) == [1.5, None, 0.5]
    assert [s.status for s in scores] == ["ok", "unscorable", "ok"]


VERL_ASYNC = """
import asyncio

barrier = None


async def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    global barrier
    barrier = barrier or asyncio.Barrier(3)
    await asyncio.wait_for(barrier.wait(), 10)  # passes only when all three calls are in flight at once
    return float(solution_str == ground_truth)
"""


def test_verl_async_calls_of_a_chunk_run_concurrently(tmp_path: Path, resources: WorkerResources) -> None:
    (tmp_path / "verl_async.py").write_text(VERL_ASYNC)
    reward = build(
        tmp_path, resources, function="verl_async.py:compute_score", convention="verl", data_source="d"
    )
    rows = [{"completion": c, "ground_truth": "a"} for c in ("a", "b", "a")]
    assert values(reward.score(samples(*rows))) == [1.0, 0.0, 1.0]


@pytest.mark.usefixtures("verl_site")
def test_verl_scorers_import_without_the_training_stack_in_a_fresh_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    _verl_scorer()
    code = (
        "import sys\n"
        "from rewardq.workers.rewards.functions.verl import VerlConvention\n"
        "from rewardq.workers.rewards.functions.loading import module_loader\n"
        "from rewardq.workers.rewards.functions.function import FunctionOptions\n"
        "opts = FunctionOptions(function='verl.utils.reward_score.gsm8k:compute_score', convention='verl')\n"
        "module = VerlConvention(opts).load(module_loader(opts.function))\n"
        "print(module.compute_score('#### 3', '3'), 'ray' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1.0", "False", "False"]

    # An import that fails for another reason is not retried, and verl is left alone.
    (tmp_path / "broken.py").write_text("import module_that_does_not_exist\n")
    code = (
        "import sys\n"
        "from rewardq.workers.rewards.functions.verl import VerlConvention\n"
        "from rewardq.workers.rewards.functions.loading import module_loader\n"
        "from rewardq.workers.rewards.functions.function import FunctionOptions\n"
        f"opts = FunctionOptions(function='{tmp_path / 'broken.py'}:f', convention='verl')\n"
        "try:\n"
        "    VerlConvention(opts).load(module_loader(opts.function))\n"
        "except ImportError as e:\n"
        "    print(e.name, 'verl' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["module_that_does_not_exist", "False"]


# --- configuration and set-up ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"function": "no_colon", "convention": "trl"}, "must be 'module:attribute'"),
        ({"function": "a b:c", "convention": "trl"}, "neither a module name nor a .py file"),
        ({"function": "m:f", "convention": "openrlhf"}, "convention"),
        ({"function": "m:f", "convention": "trl", "batch": True}, "batch: only for convention 'verl'"),
        ({"function": "m:f", "convention": "trl", "nope": 1}, "nope"),
    ],
)
def test_bad_options_name_the_reward_and_the_problem(
    tmp_path: Path, table: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=r"\[rewards\.r\]") as info:
        RewardsConfig.load(rewards_file(tmp_path, r=table))
    assert message in str(info.value)


def test_options_do_not_import_the_function_and_resolve_files_beside_the_rewards_file(tmp_path: Path) -> None:
    import sys

    config = RewardsConfig.load(
        rewards_file(
            tmp_path,
            a={"function": "module_that_does_not_exist:f", "convention": "trl"},
            b={"function": "sub/my_rewards.py:f", "convention": "trl"},
        )
    )
    assert "module_that_does_not_exist" not in sys.modules
    assert config.spec("b").options.function == f"{tmp_path / 'sub' / 'my_rewards.py'}:f"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("module_that_does_not_exist:f", "ModuleNotFoundError"),
        ("json:no_such_function", "AttributeError"),
        ("missing.py:f", "FileNotFoundError"),
        ("json:__name__", "is not callable"),
    ],
)
def test_a_bad_function_fails_set_up_naming_the_reward(
    tmp_path: Path, resources: WorkerResources, function: str, message: str
) -> None:
    with pytest.raises(RewardSetupError, match="reward 'r'") as info:
        build(tmp_path, resources, function=function, convention="trl")
    assert message in str(info.value)


def test_the_fingerprint_follows_the_functions_source(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text("def f(completions, **kw):\n    return [1.0] * len(completions)\n")
    path = rewards_file(tmp_path, r={"function": "f.py:f", "convention": "trl"})
    before = RewardsConfig.load(path).build("r").fingerprint
    (tmp_path / "f.py").write_text("def f(completions, **kw):\n    return [2.0] * len(completions)\n")
    assert RewardsConfig.load(path).build("r").fingerprint != before
    trl = RewardsConfig.load(
        rewards_file(tmp_path, r={"function": "trl.rewards:accuracy_reward", "convention": "trl"})
    )
    assert "trl==" in str(trl.build("r").identity())


# --- through a real worker over Redis --------------------------------------------------------------


def _score_through_a_worker(
    tmp_path: Path,
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    rows: list[dict[str, Any]],
    **tables: dict[str, Any],
) -> Any:
    rewards = rewards_file(tmp_path, **tables)
    start_worker(
        redis_server.url,
        sqlite_url,
        "--rewards",
        ",".join(tables),
        "--concurrency",
        "1",
        env={"REWARDQ_REWARDS": str(rewards)},
    )
    settings = Settings.from_env({}, broker_url=redis_server.url, rewards=rewards)
    with RewardClient(settings) as client:
        return client.score(rows, list(tables), run_id="fn", timeout=120)


@pytest.mark.slow
def test_a_trl_function_through_a_real_worker(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    from trl.rewards import accuracy_reward

    result = _score_through_a_worker(
        tmp_path,
        redis_server,
        sqlite_url,
        start_worker,
        MATH_ROWS,
        trl_acc={"function": "trl.rewards:accuracy_reward", "convention": "trl"},
    )
    assert result.rewards["trl_acc"] == accuracy_reward(
        completions=[r["completion"] for r in MATH_ROWS], solution=[r["solution"] for r in MATH_ROWS]
    )
    assert result.statuses["trl_acc"] == ["ok", "ok", "unscorable"]


@pytest.mark.slow
@pytest.mark.usefixtures("verl_site")
def test_a_verl_scorer_through_a_real_worker(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    default_compute_score = _verl_scorer()
    result = _score_through_a_worker(
        tmp_path,
        redis_server,
        sqlite_url,
        start_worker,
        VERL_ROWS,
        verl_score={"function": "verl.utils.reward_score:default_compute_score", "convention": "verl"},
    )
    expected = []
    for row in VERL_ROWS[:4]:
        gt = row.get("ground_truth") or row["reward_model"]["ground_truth"]
        value = default_compute_score(row["data_source"], row["completion"], gt, extra_info={})
        expected.append(float(value["score"] if isinstance(value, dict) else value))
    assert result.rewards["verl_score"][:4] == expected == [1.0, 0.0, 1.0, 1.0]
    assert result.statuses["verl_score"][4:] == ["unscorable", "error"]
