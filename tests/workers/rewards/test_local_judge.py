"""Tests of the ``local_judge`` reward kind: options, the ``swift_genrm`` preset's prompt and parsing
(after ms-swift's ``GenRMPlugin``), verdicts and statuses from controlled replies, a judge trained on
the spot answering through the real ``generate`` path, start-up errors, and a real worker over Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.judges import swift_genrm
from rewardq.workers.rewards.judges.local_judge import LocalJudgeReward
from tests.conftest import RedisServer, WorkerProcess
from tests.tinyjudges import build_trained_judge
from tests.tinymodels import build_causal_lm, build_classifier

pytestmark = pytest.mark.timeout(900)  # the trained judge's first build, on busy cores

ROOT = Path(__file__).resolve().parents[3]
SYSTEM = "Rate the answer from 0 to 10."
TEMPLATE = "Question: {prompt}\nAnswer: {completion}\nReference: {reference}"
JUDGE = {"system": SYSTEM, "template": TEMPLATE, "score_range": (0, 10)}

RIGHT = Sample(prompt="What is 2 + 2?", completion="4", columns={"reference": "4"})
WRONG = Sample(prompt="What is 2 + 2?", completion="5", columns={"reference": "4"})
VAGUE = Sample(prompt="What is 2 + 2?", completion="I do not know", columns={"reference": "4"})
HEDGED = Sample(prompt="What is 2 + 2?", completion="four or five", columns={"reference": "4"})
NO_REFERENCE = Sample(prompt="What is 2 + 2?", completion="4")

# What the judge is trained to answer, per (options, sample).
REPLIES = [
    (JUDGE, RIGHT, "Correct, it matches the reference. [[9]]"),
    (JUDGE, WRONG, "Wrong. [[2]]"),
    (JUDGE, VAGUE, "I cannot tell."),
    (JUDGE, HEDGED, "[[2]] or [[9]]"),
    ({"preset": "swift_genrm"}, RIGHT, "The response is right.\nReward: 0.85"),
]


def judge(model: Path | str, **options: Any) -> LocalJudgeReward:
    return LocalJudgeReward("judge", LocalJudgeReward.Options(model=str(model), **options))


@pytest.fixture(scope="module")
def trained_judge() -> Path:
    """Trained once (a minute or two on two busy cores), then reused from .cache/ across runs."""
    examples = [(judge("unused", **options).chat(sample), reply) for options, sample, reply in REPLIES]
    return build_trained_judge(ROOT / ".cache" / "tiny-judges" / "trained-judge", examples)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_causal_lm(tmp_path_factory.getbasetemp() / "tiny-lm")


@pytest.fixture
def resources() -> Iterator[WorkerResources]:
    yield WorkerResources(Settings.from_env({}))


def ready(resources: WorkerResources, model: Path, **options: Any) -> LocalJudgeReward:
    reward = judge(model, **options)
    reward.setup(resources)
    return reward


# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"parser": r"score (\d+)/(\d+)"}, "exactly one capturing group"),
        ({"parser": r"score \d+"}, "exactly one capturing group"),
        ({"parser": r"score ([0-9]"}, "not a regular expression"),
        ({"score_range": (10, 0)}, "low < high"),
        ({"template": "Grade {completion"}, "expected '}'"),
        ({"template": "Grade {sample.completion}"}, "only plain names"),
        ({"preset": "swift_genrm", "template": "{completion}"}, "leave them out"),
        ({"preset": "swift_genrm", "system": "x", "parser": "(x)"}, "system, parser"),
        ({"preset": "openai"}, "swift_genrm"),
        ({"max_new_tokens": 0}, "greater than or equal to 1"),
        ({"temperature": -1}, "greater than or equal to 0"),
        ({"beams": 4}, "Extra inputs are not permitted"),
    ],
)
def test_bad_options_are_refused_naming_the_problem(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        LocalJudgeReward.Options(model="judge", **options)


def test_options_are_validated_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from rewardq.workers.rewards.registry import KindRegistry\n"
        "cls = KindRegistry().resolve('local_judge')\n"
        "reward = cls('j', cls.Options(model='/nowhere', preset='swift_genrm'))\n"
        "print(reward.fingerprint)\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


# --- the swift_genrm preset (ms-swift swift/rewards/rm_plugin.py, GenRMPlugin) ---------------------


def test_swift_genrm_system_message_is_the_plugins() -> None:
    # textwrap.dedent of the plugin's triple-quoted string: a leading and a trailing newline stay.
    assert swift_genrm.SYSTEM.startswith(
        "\nBased on the dialogue history, analyze in detail whether the model's response is accurate, "
        "complete, and relevant.\nAssign a reward score between 0 and 1,"
    )
    assert swift_genrm.SYSTEM.endswith("format:\n\nReward: {reward}\n\nFor example:\nReward: 0.85\n")


def test_swift_genrm_query_is_the_plugins_messages_to_query() -> None:
    # The docstring example of GenRMPlugin.messages_to_query.
    messages: list[Any] = [
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "I am fine, thank you! How can I assist you today?"},
        {"role": "user", "content": "Can you help me with my homework?"},
    ]
    assert swift_genrm.query(messages) == (
        "User: Hello, how are you?\n"
        "Assistant: I am fine, thank you! How can I assist you today?\n"
        "User: Can you help me with my homework?"
    )
    # Roles map case-insensitively, others are capitalised, messages without content are skipped.
    more: list[Any] = [
        {"role": "SYSTEM", "content": "Be brief."},
        {"role": "tool", "content": "42"},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": None},
    ]
    assert swift_genrm.query(more) == "System: Be brief.\nTool: 42"


def test_swift_genrm_chat_is_system_then_the_whole_dialogue() -> None:
    sample = Sample(
        prompt=[{"role": "system", "content": "You are a tutor."}, {"role": "user", "content": "2+2?"}],
        completion="4",
    )
    assert judge("m", preset="swift_genrm").chat(sample) == [
        {"role": "system", "content": swift_genrm.SYSTEM},
        {"role": "user", "content": "System: You are a tutor.\nUser: 2+2?\nAssistant: 4"},
    ]
    plain = Sample(prompt="2+2?", completion=[{"role": "assistant", "content": "4"}])
    assert judge("m", preset="swift_genrm").chat(plain)[1]["content"] == "User: 2+2?\nAssistant: 4"


def forced(model: Any, tokenizer: Any, replies: list[str]) -> Callable[..., Any]:
    """A stand-in for ``model.generate`` that answers the i-th row with ``replies[i]``, left-padded
    input and end-of-sequence token included, as the real one returns them."""
    import torch

    def generate(input_ids: Any, **kwargs: Any) -> Any:
        rows = [
            tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in replies
        ]
        width = max(len(r) for r in rows)
        out = torch.full((len(rows), width), tokenizer.pad_token_id)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row)
        return torch.cat([input_ids, out], dim=1)

    return generate


def scored_replies(
    resources: WorkerResources,
    model: Path,
    replies: list[str],
    monkeypatch: pytest.MonkeyPatch,
    **options: Any,
) -> list[Score]:
    reward = ready(resources, model, **options)
    generator = reward._generator
    assert generator is not None
    monkeypatch.setattr(generator.model, "generate", forced(generator.model, generator.tokenizer, replies))
    return reward.score([RIGHT] * len(replies))


# Derived from GenRMPlugin.extract_reward: re.search(r'Reward:\s*([0-1](?:\.\d+)?)', output).
SWIFT_REPLIES = [
    ("The response is complete.\nReward: 0.85", 0.85),
    ("Reward:1", 1.0),
    ("Reward: 0", 0.0),
    ("Reward: 10", 1.0),  # the regex reads the first digit only, as in ms-swift
    ("Reward: 1.5", 1.5),
    ("Reward: 0.85, as the example says: Reward: 0.85", 0.85),
]
SWIFT_ERRORS = [
    ("reward: 0.5", "parse_error"),  # case-sensitive
    ("Reward: 2", "parse_error"),  # ms-swift: 0.0
    ("no verdict at all", "parse_error"),  # ms-swift: 0.0
    ("Reward: 0.2 ... on reflection Reward: 0.9", "ambiguous"),  # ms-swift: the first, 0.2
]


def test_swift_genrm_reads_rewards_as_the_plugin_does(
    resources: WorkerResources, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replies = [r for r, _ in SWIFT_REPLIES]
    scores = scored_replies(resources, tiny_lm, replies, monkeypatch, preset="swift_genrm")
    assert [s.status for s in scores] == ["ok"] * len(replies)
    assert [s.value for s in scores] == pytest.approx([v for _, v in SWIFT_REPLIES])
    assert [s.raw for s in scores] == replies


def test_swift_genrm_replies_without_one_reward_are_errors_not_zero(
    resources: WorkerResources, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replies = [r for r, _ in SWIFT_ERRORS]
    scores = scored_replies(resources, tiny_lm, replies, monkeypatch, preset="swift_genrm")
    assert [s.status for s in scores] == ["error"] * len(replies)
    assert all(s.value is None for s in scores)
    assert [s.raw for s in scores] == replies, "the reply is kept for the audit"
    for score, (_, reason) in zip(scores, SWIFT_ERRORS, strict=True):
        assert reason in (score.error or "")


# --- verdicts and statuses -----------------------------------------------------------------------


def test_default_parser_and_score_range(
    resources: WorkerResources, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replies = ["Good. [[7]]", "Reward: 0.5", "[[10]]", "It is [[3]]. So: [[3]]", "[[3]] or [[4]]", "seven"]
    scores = scored_replies(resources, tiny_lm, replies, monkeypatch, **JUDGE)
    assert [s.status for s in scores] == ["ok", "ok", "ok", "ok", "error", "error"]
    assert [s.value for s in scores[:4]] == pytest.approx([0.7, 0.05, 1.0, 0.3])
    assert "ambiguous" in (scores[4].error or "") and "parse_error" in (scores[5].error or "")
    custom = scored_replies(
        resources, tiny_lm, ["Score: 4/5"], monkeypatch, template="{completion}", parser=r"Score: (\d)/5"
    )
    assert custom[0].value == 4.0, "a template of one's own and no score_range: the verdict as is"


def test_a_trained_judge_answers_through_generate(resources: WorkerResources, trained_judge: Path) -> None:
    reward = ready(resources, trained_judge, **JUDGE)
    batch = [RIGHT, WRONG, VAGUE, HEDGED, NO_REFERENCE]
    scores = reward.score(batch)
    assert [s.status for s in scores] == ["ok", "ok", "error", "error", "unscorable"]
    assert [s.value for s in scores[:2]] == pytest.approx([0.9, 0.2])
    assert [s.raw for s in scores[:4]] == [reply for _, _, reply in REPLIES[:4]]
    assert "parse_error" in (scores[2].error or "") and "ambiguous" in (scores[3].error or "")
    assert scores[4].error == "no reference: column 'reference' is missing"
    meta = scores[0].meta
    assert meta is not None and meta.truncated is False and meta.template_hash
    assert meta.prompt_tokens and meta.completion_tokens and meta.completion_tokens < 256
    alone = [reward.score([sample])[0] for sample in batch]
    assert alone == scores, "a sample's reply does not depend on its batch"
    one_by_one = ready(resources, trained_judge, batch_size=1, **JUDGE).score(batch)
    assert one_by_one == scores
    budgeted = ready(resources, trained_judge, token_budget=300, **JUDGE).score(batch)
    assert budgeted == scores


def test_the_trained_judge_under_the_swift_genrm_preset(
    resources: WorkerResources, trained_judge: Path
) -> None:
    [score] = ready(resources, trained_judge, preset="swift_genrm").score([RIGHT])
    assert (score.status, score.value, score.raw) == ("ok", 0.85, REPLIES[-1][2])


def test_a_reply_cut_at_max_new_tokens_is_a_flagged_error(
    resources: WorkerResources, trained_judge: Path
) -> None:
    [score] = ready(resources, trained_judge, max_new_tokens=3, **JUDGE).score([RIGHT])
    assert score.status == "error" and "cut at max_new_tokens=3" in (score.error or "")
    assert score.meta is not None and score.meta.truncated is True and score.meta.completion_tokens == 3
    assert score.raw


def test_prompt_limits_and_missing_columns_are_that_samples_error(
    resources: WorkerResources, trained_judge: Path
) -> None:
    [long] = ready(resources, trained_judge, max_prompt_tokens=5, **JUDGE).score([RIGHT])
    assert long.status == "error" and "over max_prompt_tokens=5" in (long.error or "")
    reward = ready(resources, trained_judge, template="{completion} vs {rubric}")
    scores = reward.score([RIGHT, Sample(completion="4", columns={"rubric": "exact"})])
    assert scores[0].status == "error" and "rubric" in (scores[0].error or "")


def test_sampling_is_reproducible_per_sample(resources: WorkerResources, trained_judge: Path) -> None:
    reward = ready(resources, trained_judge, temperature=1.0, seed=3, **JUDGE)
    batch = [RIGHT, WRONG, VAGUE]
    scores = reward.score(batch)
    assert [reward.score([s])[0] for s in batch] == scores


# --- start-up --------------------------------------------------------------------------------------


def test_a_missing_model_fails_setup_naming_the_path(resources: WorkerResources, tmp_path: Path) -> None:
    with pytest.raises(RewardSetupError, match="no-such-judge"):
        judge(tmp_path / "no-such-judge").setup(resources)


def test_a_judge_without_a_chat_template_fails_setup(
    resources: WorkerResources, tiny_lm: Path, tmp_path: Path
) -> None:
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_lm, bare)
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(RewardSetupError, match="no chat template"):
        judge(bare).setup(resources)


def test_a_model_without_a_language_modelling_head_fails_setup(
    resources: WorkerResources, tmp_path: Path
) -> None:
    classifier = build_classifier(tmp_path / "classifier")
    with pytest.raises(RewardSetupError, match=r"not a generative LM .*Qwen2ForSequenceClassification"):
        judge(classifier).setup(resources)


def test_judges_of_one_model_share_one_copy(resources: WorkerResources, tiny_lm: Path) -> None:
    first, second = ready(resources, tiny_lm), ready(resources, tiny_lm, preset="swift_genrm")
    assert first._generator is second._generator


# --- end to end ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_scored_through_a_worker_over_redis_into_the_audit(
    tmp_path: Path,
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    trained_judge: Path,
) -> None:
    import sqlalchemy as sa

    from rewardq import RewardClient

    config = tmp_path / "rewards.toml"
    config.write_text(
        f'[rewards.judge]\nkind = "local_judge"\nmodel = "{trained_judge}"\n'
        f"system = {SYSTEM!r}\ntemplate = '''{TEMPLATE}'''\nscore_range = [0, 10]\n"
        f'[rewards.genrm]\nkind = "local_judge"\nmodel = "{trained_judge}"\npreset = "swift_genrm"\n'
    )
    start_worker(
        redis_server.url, sqlite_url, "--rewards", "judge,genrm", "--config", str(config), "--pool", "solo"
    )
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, rewards=config)
    rows = [
        {"prompt": s.prompt, "completion": s.completion, **s.columns}
        for s in (RIGHT, WRONG, VAGUE, HEDGED, NO_REFERENCE)
    ]
    with RewardClient(settings) as client:
        result = client.score(rows, {"judge": 1.0, "genrm": 1.0}, run_id="judged", timeout=120)
    assert result.statuses["judge"] == ["ok", "ok", "error", "error", "unscorable"]
    assert result.rewards["judge"][:2] == pytest.approx([0.9, 0.2])
    assert (result.statuses["genrm"][0], result.rewards["genrm"][0]) == ("ok", 0.85)

    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        audit = conn.execute(
            sa.text(
                "SELECT sample_index, status, error, raw, truncated, prompt_tokens, completion_tokens, "
                "template_hash FROM scores WHERE run_id = 'judged' AND reward = 'judge' ORDER BY sample_index"
            )
        ).all()
    engine.dispose()
    assert [r.status for r in audit] == result.statuses["judge"]
    assert audit[2].raw == "I cannot tell." and "parse_error" in audit[2].error
    assert audit[3].raw == "[[2]] or [[9]]" and "ambiguous" in audit[3].error
    assert audit[0].raw == REPLIES[0][2]
    assert all(r.truncated is False or r.truncated == 0 for r in audit[:4])
    assert all(r.prompt_tokens and r.completion_tokens and r.template_hash for r in audit[:4])


@pytest.mark.slow
def test_a_worker_with_a_judge_it_cannot_load_fails_at_start(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str
) -> None:
    missing = tmp_path / "no-such-judge"
    config = tmp_path / "rewards.toml"
    config.write_text(f'[rewards.judge]\nkind = "local_judge"\nmodel = "{missing}"\n')
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("rewardq")), "worker", "--rewards", "format,judge"],
        env={
            "PATH": str(Path(sys.executable).parent),
            "REWARDQ_BROKER_URL": redis_server.url,
            "REWARDQ_DATABASE_URL": sqlite_url,
            "REWARDQ_REWARDS": str(config),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "reward 'judge'" in proc.stderr and str(missing) in proc.stderr
    assert " ready." not in proc.stdout + proc.stderr
