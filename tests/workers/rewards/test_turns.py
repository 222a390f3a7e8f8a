"""Per-turn scoring (``per_turn = true``): which turns a conversation has, how turn scores make a sample's
score, the options' place in the fingerprint and in the config, and turn scores equal to scoring each
prefix of the conversation as its own sample, in a killable child (a rule kind) and in process (a model)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rewardq.samples import to_sample
from rewardq.wire.errors import ConfigError
from rewardq.wire.schema import Sample
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.base import Reward, RewardOptions, Score, ScoreMeta
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.rewards.models.reward_model import RewardModelOptions, RewardModelReward
from rewardq.workers.rewards.turns import NO_TURN, score_samples, turns_of
from rewardq.workers.runtime.child import ChildScorer
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.watchdog import WatchedScorer

SYSTEM = {"role": "system", "content": "You are terse."}
TOOL_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"function": {"name": "look", "arguments": "{}"}}],
}

# A TRL tool-use rollout: its completion holds three assistant turns, a tool result and a user message.
AGENT = {
    "prompt": [SYSTEM, {"role": "user", "content": "Find the cat."}],
    "completion": [
        {"role": "assistant", "content": "looking looking looking looking for the cat"},
        {"role": "tool", "content": "the cat is on the mat"},
        {"role": "assistant", "content": "the cat is on the mat the cat is on the mat"},
        {"role": "user", "content": "Sure?"},
        {"role": "assistant", "content": "Yes, quite sure of it."},
    ],
    "completion_ids": [1, 2, 3],
    "solution": "mat",
}
# An ms-swift row: its earlier turns travel in the prompt (everything before the last message).
SWIFT_MESSAGES = [
    SYSTEM,
    {"role": "user", "content": "Count to three."},
    {"role": "assistant", "content": "one one one two two two"},
    {"role": "user", "content": "Again, properly."},
    {"role": "assistant", "content": "one two three"},
    {"role": "user", "content": "And back?"},
    {"role": "assistant", "content": "three two one three two one three two one"},
]
SWIFT = {"messages": SWIFT_MESSAGES}


def prefixes(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Each assistant turn of ``row`` (an ms-swift row, a TRL row of messages, or a one-turn row) as a row
    of its own, in the row's own shape: the expected expansion, built without the code under test."""
    if "messages" in row:
        messages = row["messages"]
        return [{"messages": messages[: i + 1]} for i, m in enumerate(messages) if m["role"] == "assistant"]
    if isinstance(row["completion"], str):
        return [row]
    conversation = row["prompt"] + row["completion"]
    columns = {k: v for k, v in row.items() if k not in ("prompt", "completion", "completion_ids")}
    return [
        {"prompt": conversation[:i], "completion": [m], **columns}
        for i, m in enumerate(conversation)
        if m["role"] == "assistant"
    ]


def sample(row: dict[str, Any]) -> Sample:
    return Sample.model_validate(to_sample(row))


def test_every_assistant_message_of_the_conversation_is_a_turn_scored_with_what_came_before() -> None:
    agent = turns_of(sample(AGENT))
    assert [t.model_dump() for t in agent] == [sample(r).model_dump() for r in prefixes(AGENT)]
    assert all("completion_ids" not in t.columns for t in agent)  # those of the whole completion
    swift = turns_of(sample(SWIFT))
    assert [t.model_dump() for t in swift] == [sample(r).model_dump() for r in prefixes(SWIFT)]
    assert [t.completion for t in swift] == [
        "one one one two two two",
        "one two three",
        SWIFT_MESSAGES[-1]["content"],
    ]
    # A one-turn sample is its own only turn, token ids and all; a string prompt is a user message.
    single = sample({"prompt": "Hi", "completion": "hello", "completion_ids": [5]})
    assert turns_of(single) == [single]
    tools = sample(
        {"prompt": "Hi", "completion": [TOOL_CALL, {"role": "tool", "content": "x"}, AGENT["completion"][2]]}
    )
    first, second = turns_of(tools)
    assert first.prompt == "Hi" and first.completion == [TOOL_CALL]
    assert second.prompt == [{"role": "user", "content": "Hi"}, TOOL_CALL, {"role": "tool", "content": "x"}]
    assert turns_of(sample({"prompt": "Hi", "completion": [{"role": "tool", "content": "x"}]})) == []


class Lookup(Reward):
    """A turn's value is written in its text; ``ERR``, ``SLOW`` and ``SKIP`` turns fail as they say."""

    kind = "lookup"
    calls: ClassVar[list[int]] = []

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        self.calls.append(len(samples))
        return [self._one(s.completion_text) for s in samples]

    @staticmethod
    def _one(text: str) -> Score:
        if text == "ERR":
            return Score.failed("boom", raw="r-err")
        if text == "SLOW":
            return Score.timed_out("late")
        if text == "SKIP":
            return Score.unscorable("no reference")
        return Score.ok(float(text), raw=f"r{text}", meta=ScoreMeta(http_attempts=1, prompt_tokens=2))


def lookup(aggregate: str | None = None) -> Lookup:
    options = {"per_turn": True} | ({"turn_aggregate": aggregate} if aggregate else {})
    return Lookup("lookup", RewardOptions.model_validate(options))


def chat(*turns: str) -> Sample:
    messages: list[Any] = []
    for turn in turns:
        messages += [{"role": "user", "content": "go on"}, {"role": "assistant", "content": turn}]
    return Sample(prompt=messages[:1], completion=messages[1:])


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [(None, 4.0), ("last", 4.0), ("min", 0.5), ("mean", 2.5), ("max", 4.0), ("prod", 6.0)],
)
def test_the_sample_value_is_the_turn_aggregate_and_its_steps_are_the_turn_scores(
    aggregate: str | None, expected: float
) -> None:
    reward = lookup(aggregate)
    Lookup.calls.clear()
    scores = score_samples(reward, [chat("3", "0.5", "4"), chat("2")])
    assert Lookup.calls == [4], "one call of the reward for every turn of the chunk"
    assert scores[0].status == "ok" and scores[0].value == pytest.approx(expected)
    assert scores[0].steps == (3.0, 0.5, 4.0) and scores[0].step_ends is None
    assert scores[0].raw == '["r3","r0.5","r4"]'
    assert scores[0].meta == ScoreMeta(http_attempts=3, prompt_tokens=6)
    assert (scores[1].value, scores[1].steps) == (2.0, (2.0,))


def test_a_failed_turn_fails_the_sample_when_the_aggregate_reads_it_and_is_none_in_its_steps() -> None:
    errs = chat("1", "ERR", "SLOW", "2")
    last = score_samples(lookup(), [errs])[0]
    assert (last.status, last.value, last.steps) == ("ok", 2.0, (1.0, None, None, 2.0))
    mean = score_samples(lookup("mean"), [errs])[0]
    assert (mean.status, mean.value, mean.error) == ("error", None, "turn 2 of 4: boom")
    assert mean.steps == (1.0, None, None, 2.0)
    late = score_samples(lookup("min"), [chat("1", "SLOW")])[0]
    assert (late.status, late.error) == ("timeout", "turn 2 of 2: late")
    ends_badly = score_samples(lookup(), [chat("1", "ERR")])[0]
    assert (ends_badly.status, ends_badly.error) == ("error", "turn 2 of 2: boom")


def test_unscorable_turns_are_left_out_and_a_sample_with_none_left_is_unscorable() -> None:
    skipped = score_samples(lookup("mean"), [chat("1", "SKIP", "2")])[0]
    assert (skipped.status, skipped.value, skipped.steps) == ("ok", 1.5, (1.0, None, 2.0))
    last = score_samples(lookup(), [chat("1", "SKIP")])[0]
    assert (last.status, last.error) == ("unscorable", "turn 2 of 2: no reference")
    none = score_samples(lookup("max"), [chat("SKIP", "SKIP")])[0]
    assert (none.status, none.error) == ("unscorable", "turn 2 of 2: no reference")


def test_a_conversation_without_an_assistant_turn_is_unscorable() -> None:
    no_turn = Sample(
        prompt=[{"role": "user", "content": "hi"}], completion=[{"role": "tool", "content": "x"}]
    )
    Lookup.calls.clear()
    scores = score_samples(lookup(), [no_turn, chat("1")])
    assert [(s.status, s.error) for s in scores] == [("unscorable", NO_TURN), ("ok", None)]
    assert score_samples(lookup(), [no_turn]) == [Score.unscorable(NO_TURN)]
    assert Lookup.calls == [1], "a chunk without turns does not call the reward"


# The fingerprints of these configurations on main before the turn options existed (9d74f62).
PINNED = {
    "fmt": "format@1:17457333e65f",
    "sc": "string_check@1:b74ad5d02309",
    "rep": "repetition@1:01c406a261a0",
    "jd": "judge@1:cfc62086a52e",
    "accuracy": "accuracy@1:0601da74fe2a",
    "cosine": "cosine@1:2b6bd0b565b1",
}
TABLES = """
[rewards.fmt]
kind = "format"
[rewards.sc]
kind = "string_check"
operation = "like"
timeout = 5
[rewards.rep]
kind = "repetition"
repetition_n_grams = 2
[rewards.jd]
kind = "judge"
base_url = "http://127.0.0.1:9/v1"
model = "m"
"""


def load(tmp_path: Path, text: str) -> RewardsConfig:
    path = tmp_path / "rewards.toml"
    path.write_text(text)
    return RewardsConfig.load(path)


def test_the_turn_options_change_no_fingerprint_at_their_defaults_and_change_it_when_set(
    tmp_path: Path,
) -> None:
    config = load(tmp_path, TABLES)
    assert {name: config.build(name).fingerprint for name in PINNED} == PINNED
    per_turn_rep = 'kind = "repetition"\nrepetition_n_grams = 2\nper_turn = true\n'
    turns = load(
        tmp_path,
        TABLES.replace("repetition_n_grams = 2", "repetition_n_grams = 2\nper_turn = true")
        + f'[rewards.rep_last]\n{per_turn_rep}turn_aggregate = "last"\n'
        + f'[rewards.rep_min]\n{per_turn_rep}turn_aggregate = "min"\n',
    )
    per_turn = turns.build("rep").fingerprint
    assert per_turn != PINNED["rep"]
    assert turns.build("rep_last").fingerprint == per_turn  # the default, said or not
    assert turns.build("rep_min").fingerprint not in (per_turn, PINNED["rep"])
    assert turns.build("fmt").fingerprint == PINNED["fmt"]


GROUP_PLUGIN = """
from rewardq.workers.rewards.base import Reward, Score


class Ranked(Reward):
    kind = "ranked"
    sees = "group"

    def score(self, samples):
        return [Score.ok(float(i)) for i, _ in enumerate(samples)]


class Stepped(Reward):
    kind = "stepped"
    turns_allowed = False

    def score(self, samples):
        return [Score.ok(1.0, steps=(1.0,)) for _ in samples]


def register(kinds):
    kinds.add("ranked", Ranked)
    kinds.add("stepped", Stepped)
"""


@pytest.mark.parametrize("kind", ["ranked", "stepped"])
def test_a_kind_that_cannot_score_turns_refuses_per_turn_at_config_load(tmp_path: Path, kind: str) -> None:
    (tmp_path / "kinds.py").write_text(GROUP_PLUGIN)
    head = f'plugins = ["kinds.py"]\ngroup_kinds = ["ranked"]\n[rewards.r]\nkind = "{kind}"\n'
    assert load(tmp_path, head).build("r").kind == kind
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, head + "per_turn = true\n")
    message = str(refused.value)
    assert "\n" not in message
    assert f"[rewards.r] (kind {kind}): 'per_turn': this kind cannot score per turn" in message


def test_turn_aggregate_without_per_turn_or_unknown_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'turn_aggregate': Value error, applies only with per_turn = true"
    ):
        load(tmp_path, '[rewards.r]\nkind = "format"\nturn_aggregate = "min"\n')
    with pytest.raises(
        ConfigError, match=r"\[rewards.r\] \(kind format\): 'turn_aggregate': Input should be"
    ):
        load(tmp_path, '[rewards.r]\nkind = "format"\nper_turn = true\nturn_aggregate = "median"\n')


REPETITION = """
[rewards.rep_turns]
kind = "repetition"
repetition_n_grams = 2
per_turn = true
turn_aggregate = "mean"
[rewards.repetition]
kind = "repetition"
repetition_n_grams = 2
"""


@pytest.fixture
def runtime(tmp_path: Path, sqlite_url: str) -> Iterator[Callable[[str], WorkerRuntime]]:
    """Factory: a worker's runtime serving the rewards of a rewards file's text; closed after the test."""

    def build(text: str) -> WorkerRuntime:
        path = tmp_path / "rewards.toml"
        path.write_text(text)
        built.append(WorkerRuntime(Settings.from_env({}, database_url=sqlite_url), RewardsConfig.load(path)))
        return built[-1]

    built: list[WorkerRuntime] = []
    yield build
    for rt in built:
        rt.close()


@pytest.mark.slow
def test_turn_scores_in_a_killable_child_equal_scoring_each_prefix_as_its_own_sample(
    runtime: Callable[[str], WorkerRuntime],
) -> None:
    rt = runtime(REPETITION)
    per_turn, plain = rt.reward("rep_turns"), rt.reward("repetition")
    assert isinstance(per_turn, ChildScorer)
    rows = [AGENT, SWIFT]
    scores = per_turn.score([sample(r) for r in rows])
    for row, score in zip(rows, scores, strict=True):
        alone = [s.value for s in plain.score([sample(p) for p in prefixes(row)])]
        assert score.steps == tuple(alone)
        assert len(set(alone)) > 1, "turns that differ"
        assert score.status == "ok" and score.value == pytest.approx(math.fsum(alone) / len(alone))
    assert [per_turn.score([sample(r)])[0] for r in rows] == scores, "the chunk changes no score"


@pytest.mark.slow
def test_turn_scores_of_a_reward_model_in_process_equal_scoring_each_prefix(
    runtime: Callable[[str], WorkerRuntime], classifier_right: Path
) -> None:
    rt = runtime(
        f'[rewards.rm_turns]\nkind = "reward_model"\nmodel = "{classifier_right}"\nper_turn = true\n'
    )
    per_turn = rt.reward("rm_turns")
    assert isinstance(per_turn, WatchedScorer)
    rows = [AGENT, SWIFT, {"prompt": "Hi", "completion": "Hello there."}]
    scores = per_turn.score([sample(r) for r in rows])
    alone = RewardModelReward("rm", RewardModelOptions(model=str(classifier_right)))
    alone.setup(WorkerResources(Settings()))
    for row, score in zip(rows, scores, strict=True):
        expected = [s.value for s in alone.score([sample(p) for p in prefixes(row)])]
        assert list(score.steps or ()) == pytest.approx(expected, abs=1e-5)
        assert score.value == pytest.approx(expected[-1], abs=1e-5)  # turn_aggregate "last"
    assert scores[2].value == pytest.approx(alone.score([sample(rows[2])])[0].value, abs=1e-5)
