"""Tests for the ``process_reward_model`` kind, in process: parity of every step score with a plain
transformers forward pass whatever the chunking, step splitting and ends, aggregates, the prompt's
system turn, truncation and start-up errors. Through a real worker: test_process_reward_model_worker.py.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.models.process_reward_model import ProcessRewardModel, ProcessRewardModelOptions
from rewardq.workers.rewards.models.steps import QWEN_PRM_SYSTEM, split_steps
from tests.tinymodels import PRM_STEP_TAG

TOLERANCE = 1e-4
TEXT = "the answer is 42 so we add 2 and 3 to get 5 x = 7 Final boxed correct because"
WORDS = TEXT.split()


def make_prm(model: Path, **options: Any) -> ProcessRewardModel:
    reward = ProcessRewardModel("prm", ProcessRewardModelOptions(model=str(model), **options))
    reward.setup(WorkerResources(Settings()))
    return reward


@functools.cache
def plain_model(model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForTokenClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    return tokenizer, model


def plain_step_scores(
    model_dir: Path, query: str, steps: list[str], system: str = QWEN_PRM_SYSTEM
) -> list[float]:
    """As Qwen2.5-Math-PRM's model card scores: system, query, the steps joined by the tag (one after
    the last), rendered, one forward pass; the probability of label 1 at each tag token."""
    import torch

    tokenizer, model = plain_model(model_dir)
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": query},
        {"role": "assistant", "content": PRM_STEP_TAG.join(steps) + PRM_STEP_TAG},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        probabilities = model(input_ids=ids).logits[0].softmax(dim=-1)[:, 1]
    tag = tokenizer.convert_tokens_to_ids(PRM_STEP_TAG)
    return [float(p) for p in probabilities[ids[0] == tag]]


def solutions(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """(query, steps): 1 to 6 steps each, mostly short, a few long."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        steps = []
        for _ in range(rng.randint(1, 6)):
            length = rng.randint(2, 10) if rng.random() < 0.85 else rng.randint(40, 90)
            steps.append(" ".join(rng.choice(WORDS) for _ in range(length)))
        out.append((f"Question {i}: what is 2 + 3?", steps))
    return out


@pytest.mark.parametrize("token_budget", [96, 700, 1 << 16])
def test_every_step_score_equals_a_plain_forward_pass_whatever_the_chunking(
    token_budget: int, token_classifier: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rewardq.workers.rewards.models.reward_model")
    cases = solutions(24)
    samples = [Sample(prompt=q, completion="\n\n".join(steps)) for q, steps in cases]
    reward = make_prm(token_classifier, token_budget=max(token_budget, 400), max_length=400)
    scores = reward.score(samples)
    passes = [int(n) for n in re.findall(r"in (\d+) forward passes", caplog.text)]
    assert passes and (passes[0] > 1) == (token_budget < 1 << 16)
    for (query, steps), sample, score in zip(cases, samples, scores, strict=True):
        want = plain_step_scores(token_classifier, query, steps)
        assert score.status == "ok", score.error
        assert score.steps is not None and len(score.steps) == len(steps)
        assert list(score.steps) == pytest.approx(want, abs=TOLERANCE)
        assert score.value == pytest.approx(min(want), abs=TOLERANCE)
        text = sample.completion_text
        assert score.step_ends is not None
        assert [text[:end][-len(step) :] for end, step in zip(score.step_ends, steps, strict=True)] == steps


def test_a_sample_scores_the_same_alone_and_in_any_batch(token_classifier: Path) -> None:
    samples = [Sample(prompt=q, completion="\n\n".join(s)) for q, s in solutions(12, seed=3)]
    batched = make_prm(token_classifier, token_budget=2048).score(samples)
    reward = make_prm(token_classifier)
    for sample, score in zip(samples, batched, strict=True):
        [alone] = reward.score([sample])
        assert score.status == alone.status == "ok"
        assert alone.steps == pytest.approx(score.steps, abs=1e-5)


def test_steps_split_on_the_separator_and_blank_steps_are_dropped() -> None:
    steps = split_steps("\n\nAdd 2 and 3.\n\n \n\nSo 5.\n\n", "\n\n")
    assert steps.texts == ("Add 2 and 3.", "So 5.")
    assert steps.ends == (14, 24)
    assert split_steps("a; b", "; ").ends == (1, 4)


@pytest.mark.parametrize(
    ("aggregate", "combine"),
    [("min", min), ("last", lambda v: v[-1]), ("mean", lambda v: sum(v) / len(v)), ("prod", math.prod)],
)
def test_the_value_is_the_aggregate_of_the_steps(
    aggregate: str, combine: Any, token_classifier: Path
) -> None:
    sample = Sample(prompt="What is 2 + 3?", completion="Add 2 and 3.\n\nThat is 5.\n\nFinal: 5")
    [score] = make_prm(token_classifier, aggregate=aggregate).score([sample])
    assert score.steps is not None and len(score.steps) == 3
    assert score.value == pytest.approx(combine(list(score.steps)), abs=1e-12)


def test_separator_and_system_prompt_options(token_classifier: Path) -> None:
    sample = Sample(prompt="What is 2 + 3?", completion="Add 2 and 3.\nThat is 5.")
    [score] = make_prm(token_classifier, step_separator="\n", system_prompt="Be careful.").score([sample])
    want = plain_step_scores(
        token_classifier, "What is 2 + 3?", ["Add 2 and 3.", "That is 5."], "Be careful."
    )
    assert list(score.steps or ()) == pytest.approx(want, abs=TOLERANCE)
    assert score.step_ends == (12, 23)
    # A prompt with its own system turn keeps it and gets no second one.
    own = Sample(
        prompt=[{"role": "system", "content": "Be careful."}, {"role": "user", "content": "What is 2 + 3?"}],
        completion="Add 2 and 3.\nThat is 5.",
    )
    [again] = make_prm(token_classifier, step_separator="\n").score([own])
    assert again.steps == pytest.approx(score.steps, abs=1e-6)


def test_a_tag_in_the_prompt_does_not_become_a_step(token_classifier: Path) -> None:
    query = f"What is{PRM_STEP_TAG} 2 + 3?"
    [tagged] = make_prm(token_classifier).score([Sample(prompt=query, completion="Add.\n\nFive.")])
    _, *steps = plain_step_scores(token_classifier, query, ["Add.", "Five."])
    assert list(tagged.steps or ()) == pytest.approx(steps, abs=TOLERANCE)


def test_completions_without_steps_or_with_the_tag_are_unscorable_with_the_reason(
    token_classifier: Path,
) -> None:
    blank, tagged = make_prm(token_classifier).score(
        [Sample(prompt="p", completion=" \n\n "), Sample(prompt="p", completion=f"a{PRM_STEP_TAG}b")]
    )
    assert blank.status == "unscorable" and "no step" in (blank.error or "")
    assert tagged.status == "unscorable" and "contains the step tag" in (tagged.error or "")


def test_a_completion_whose_tags_would_be_cut_is_unscorable_not_a_value(token_classifier: Path) -> None:
    long_steps = ["the answer is 42 so we add 2 and 3 " * 6] * 4
    cut_prompt = Sample(prompt="Please solve this. " * 40, completion="Add 2 and 3.\n\nThat is 5.")
    too_long = Sample(prompt="p", completion="\n\n".join(long_steps))
    cut, lost = make_prm(token_classifier, max_length=120, token_budget=4096).score([cut_prompt, too_long])
    assert cut.status == "ok" and cut.meta is not None and cut.meta.truncated is True
    assert cut.steps is not None and len(cut.steps) == 2
    assert lost.status == "unscorable" and lost.value is None and lost.steps is None
    assert "over max_length 120" in (lost.error or "") and "no step can be scored" in (lost.error or "")


def test_a_model_that_cannot_serve_steps_fails_at_setup(
    token_classifier: Path, classifier_right: Path
) -> None:
    with pytest.raises(
        RewardSetupError, match=r"'prm'.*no token-classification head.*ForSequenceClassification"
    ):
        make_prm(classifier_right)
    with pytest.raises(RewardSetupError, match=r"step_tag '<step>' is \d+ tokens"):
        make_prm(token_classifier, step_tag="<step>")
    with pytest.raises(RewardSetupError, match=r"has 2 label\(s\).*label 2"):
        make_prm(token_classifier, label=2)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('aggregate = "max"', "aggregate"),
        ('step_tag = ""', "step_tag"),
        ("max_length = 4096\ntoken_budget = 1024", "exceeds token_budget"),
        ("shift = 1.0", "shift"),  # reward_model's affine transform is not an option here
        ("label = -1", "label"),
        ("per_turn = true", "cannot score per turn"),
    ],
)
def test_options_are_checked_on_load_without_torch(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "rewards.toml"
    path.write_text(f'[rewards.prm]\nkind = "process_reward_model"\nmodel = "/models/prm"\n{line}\n')
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from rewardq.wire.errors import ConfigError\n"
        "from rewardq.workers.rewards.config import RewardsConfig\n"
        "try:\n"
        f"    RewardsConfig.load(Path({str(path)!r}))\n"
        "except ConfigError as e:\n"
        "    print(e)\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "prm" in done.stdout and message in done.stdout
