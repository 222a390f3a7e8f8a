"""Tests for the ``reward_model`` kind, in process: parity with a plain forward pass, batch invariance,
padding sides, truncation, the affine transform, labels, templates and start-up errors.

The worker-process tests (start-up errors through ``rewardq worker``, scoring over Redis, coalescing)
are in test_reward_model_worker.py.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rewardq.wire.errors import ConfigError, RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.rewards.models.reward_model import RewardModelOptions, RewardModelReward

TOLERANCE = 1e-5


def make_reward(
    model: Path | str, name: str = "rm", resources: WorkerResources | None = None, **options: Any
) -> RewardModelReward:
    reward = RewardModelReward(name, RewardModelOptions(model=str(model), **options))
    reward.setup(resources or WorkerResources(Settings()))
    return reward


@functools.cache
def plain_model(model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    return tokenizer, model


def plain_logits(model_dir: Path, sample: Sample, max_length: int | None = None) -> list[float]:
    """Every label's logit from a plain transformers forward pass of the sample alone."""
    import torch

    tokenizer, model = plain_model(model_dir)
    prompt = [{"role": "user", "content": sample.prompt}] if isinstance(sample.prompt, str) else sample.prompt
    completion = (
        [{"role": "assistant", "content": sample.completion}]
        if isinstance(sample.completion, str)
        else sample.completion
    )
    text = tokenizer.apply_chat_template([*(prompt or []), *completion], tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if max_length is not None:
        ids = ids[-max_length:]
    with torch.inference_mode():
        return [float(v) for v in model(input_ids=torch.tensor([ids])).logits[0]]


def long_tailed_samples(n: int, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    words = [
        "the",
        "answer",
        "is",
        "42",
        "reward",
        "score",
        "correct",
        "because",
        "x",
        "=",
        "2",
        "so",
        "we",
        "add",
        "3",
        "and",
        "5",
    ]
    samples = []
    for i in range(n):
        length = rng.randint(2, 12) if rng.random() < 0.85 else rng.randint(60, 160)
        completion = " ".join(rng.choice(words) for _ in range(length))
        if i % 3 == 0:
            samples.append(Sample(prompt=f"Question {i}: what is 2 + 3?", completion=completion))
        elif i % 3 == 1:
            samples.append(
                Sample(
                    prompt=[
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": f"Solve {i}."},
                    ],
                    completion=[{"role": "assistant", "content": completion}],
                )
            )
        else:
            samples.append(Sample(completion=completion))
    return samples


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return long_tailed_samples(40)


@pytest.mark.parametrize("side", ["right", "left"])
def test_equals_a_plain_forward_pass_of_each_sample_alone(
    side: str, classifier_right: Path, classifier_left: Path, samples: list[Sample]
) -> None:
    model_dir = classifier_right if side == "right" else classifier_left
    scores = make_reward(model_dir).score(samples)
    for sample, score in zip(samples, scores, strict=True):
        assert score.status == "ok"
        assert score.value == pytest.approx(plain_logits(model_dir, sample)[0], abs=TOLERANCE)


def test_padding_side_of_the_tokenizer_does_not_change_scores(
    classifier_right: Path, classifier_left: Path, samples: list[Sample]
) -> None:
    # Same seed, same weights; only the tokenizer's declared padding side differs.
    right = make_reward(classifier_right).score(samples)
    left = make_reward(classifier_left).score(samples)
    for a, b in zip(right, left, strict=True):
        assert a.value == pytest.approx(b.value, abs=TOLERANCE)


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_sample_scores_the_same_alone_in_a_small_and_in_a_large_mixed_batch(
    side: str, classifier_right: Path, classifier_left: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rewardq.workers.rewards.models.reward_model")
    model_dir = classifier_right if side == "right" else classifier_left
    batch = long_tailed_samples(64, seed=1)
    probes = [batch[0], batch[5], max(batch, key=lambda s: len(s.completion_text))]
    passes = set()
    for budget in (1024, 2048, 4096, 65536):  # the longest sample is a few hundred tokens
        reward = make_reward(model_dir, token_budget=budget)
        large = reward.score(batch)
        small = reward.score(batch[:6])
        for probe in probes:
            alone = reward.score([probe])[0].value
            assert alone is not None
            in_large = large[batch.index(probe)].value
            assert in_large == pytest.approx(alone, abs=TOLERANCE)
            if probe in batch[:6]:
                assert small[batch.index(probe)].value == pytest.approx(alone, abs=TOLERANCE)
        passes.add(_passes_of_last_call(caplog))
    assert len(passes) > 1  # the budgets did pack the large batch differently


def test_scores_come_back_in_input_order(classifier_right: Path, samples: list[Sample]) -> None:
    reward = make_reward(classifier_right, token_budget=128)
    forward = reward.score(samples)
    backward = reward.score(samples[::-1])
    assert [s.value for s in forward] == pytest.approx([s.value for s in backward[::-1]], abs=TOLERANCE)


def test_records_token_counts_and_no_truncation(classifier_right: Path) -> None:
    sample = Sample(prompt="What is 2 + 3?", completion="5")
    score = make_reward(classifier_right).score([sample])[0]
    assert score.meta is not None
    assert score.meta.truncated is False
    assert score.meta.prompt_tokens is not None and score.meta.prompt_tokens > 0
    assert score.meta.completion_tokens is not None and score.meta.completion_tokens > 0


def test_left_truncation_drops_prompt_tokens_and_is_flagged(classifier_right: Path) -> None:
    sample = Sample(prompt="Please rate the following response. " * 20, completion="The answer is 42.")
    full = make_reward(classifier_right).score([sample])[0]
    assert full.meta is not None and full.meta.prompt_tokens is not None
    total = full.meta.prompt_tokens + (full.meta.completion_tokens or 0)
    max_length = total - 30
    cut = make_reward(classifier_right, max_length=max_length).score([sample])[0]
    assert cut.status == "ok"
    assert cut.meta is not None and cut.meta.truncated is True
    assert cut.meta.prompt_tokens == full.meta.prompt_tokens - 30
    assert cut.meta.completion_tokens == full.meta.completion_tokens
    assert cut.value == pytest.approx(plain_logits(classifier_right, sample, max_length)[0], abs=TOLERANCE)
    assert cut.value != pytest.approx(full.value, abs=TOLERANCE)


def test_left_truncation_never_cuts_the_completion(classifier_right: Path) -> None:
    sample = Sample(prompt="Hi", completion="The quick brown fox jumps over the lazy dog. " * 10)
    score = make_reward(classifier_right, max_length=20).score([sample])[0]
    assert score.status == "unscorable"
    assert score.value is None
    assert "completion alone" in (score.error or "")


def test_unscorable_truncation_scores_nothing_too_long(classifier_right: Path) -> None:
    short = Sample(prompt="Hi", completion="ok")
    long = Sample(prompt="Please rate the following response. " * 20, completion="The answer is 42.")
    scores = make_reward(classifier_right, max_length=40, truncation="unscorable").score([short, long])
    assert scores[0].status == "ok"
    assert scores[1].status == "unscorable"
    assert "over max_length 40" in (scores[1].error or "")


def test_shift_scale_and_clip(classifier_right: Path, samples: list[Sample]) -> None:
    raw = [s.value for s in make_reward(classifier_right).score(samples)]
    moved = [s.value for s in make_reward(classifier_right, shift=0.5, scale=-2.0).score(samples)]
    for r, m in zip(raw, moved, strict=True):
        assert r is not None
        assert m == pytest.approx((r - 0.5) * -2.0, abs=TOLERANCE)
    low, high = sorted(raw)[10], sorted(raw)[30]  # type: ignore[type-var]
    assert low is not None and high is not None
    clipped = [s.value for s in make_reward(classifier_right, clip=(low, high)).score(samples)]
    for r, c in zip(raw, clipped, strict=True):
        assert r is not None
        assert c == pytest.approx(min(max(r, low), high), abs=TOLERANCE)


def test_label_picks_one_logit_of_several(classifier_three_labels: Path, samples: list[Sample]) -> None:
    scores = make_reward(classifier_three_labels, label=2).score(samples[:5])
    for sample, score in zip(samples[:5], scores, strict=True):
        assert score.value == pytest.approx(plain_logits(classifier_three_labels, sample)[2], abs=TOLERANCE)


def test_several_labels_without_label_fail_at_setup(classifier_three_labels: Path) -> None:
    with pytest.raises(RewardSetupError, match=r"'rm3'.*has 3 labels; set `label`"):
        make_reward(classifier_three_labels, name="rm3")


def test_label_out_of_range_fails_at_setup(classifier_right: Path) -> None:
    with pytest.raises(RewardSetupError, match=r"label 1 is out of range .* 1 label"):
        make_reward(classifier_right, label=1)


def test_a_causal_lm_has_no_classification_head(causal_lm: Path) -> None:
    with pytest.raises(RewardSetupError, match=r"'rm'.*no sequence-classification head.*Qwen2ForCausalLM"):
        make_reward(causal_lm)


def test_a_missing_model_names_the_reward_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(RewardSetupError, match=rf"'rm'.*{missing}.*not found"):
        make_reward(missing)


def test_a_model_without_a_chat_template_needs_the_template_option(
    classifier_without_template: Path, classifier_right: Path, samples: list[Sample]
) -> None:
    with pytest.raises(RewardSetupError, match=r"no chat template; set the `template` option"):
        make_reward(classifier_without_template)
    from tests.tinymodels import CHATML_TEMPLATE

    templated = make_reward(classifier_without_template, template=CHATML_TEMPLATE).score(samples[:4])
    reference = make_reward(classifier_right).score(samples[:4])
    assert [s.value for s in templated] == pytest.approx([s.value for s in reference], abs=TOLERANCE)


def test_the_template_option_does_not_change_the_shared_tokenizer(
    classifier_right: Path, samples: list[Sample]
) -> None:
    other = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    resources = WorkerResources(Settings())
    plain = make_reward(classifier_right, resources=resources)
    templated = make_reward(classifier_right, resources=resources, template=other)
    assert plain._classifier is templated._classifier  # one model copy per process per path
    before = [s.value for s in plain.score(samples[:3])]
    templated.score(samples[:3])
    assert [s.value for s in plain.score(samples[:3])] == before


def test_fingerprint_names_the_model_without_loading_it(
    classifier_right: Path, classifier_left: Path
) -> None:
    a = RewardModelReward("rm", RewardModelOptions(model=str(classifier_right)))
    b = RewardModelReward("rm", RewardModelOptions(model=str(classifier_left)))
    assert a._classifier is None
    assert a.identity()["model"] == str(classifier_right.resolve())
    assert a.identity()["weights"]
    assert a.fingerprint.startswith("reward_model@")
    assert a.fingerprint != b.fingerprint


def test_template_option_is_part_of_the_identity(classifier_right: Path) -> None:
    plain = RewardModelReward("rm", RewardModelOptions(model=str(classifier_right)))
    templated = RewardModelReward("rm", RewardModelOptions(model=str(classifier_right), template="{{ x }}"))
    assert "template" in templated.identity()
    assert "template" not in plain.identity()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"clip": [1.0, -1.0]}, "low < high"),
        ({"max_length": 4096, "token_budget": 1024}, "exceeds token_budget"),
        ({"truncation": "right"}, "truncation"),
        ({"dtype": "int8"}, "dtype"),
        ({"scale": "inf"}, "finite"),
        ({"label": -1}, "label"),
        ({"token_budget": 0}, "token_budget"),
        ({"modle": "x"}, "modle"),
    ],
)
def test_options_are_validated_on_load(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    table = {"kind": "reward_model", "model": "/models/rm", **options}
    lines = [f"{k} = {_toml(v)}" for k, v in table.items()]
    path = tmp_path / "rewards.toml"
    path.write_text("[rewards.rm]\n" + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=message):
        RewardsConfig.load(path)


def test_loading_options_imports_neither_torch_nor_transformers(tmp_path: Path) -> None:
    path = tmp_path / "rewards.toml"
    path.write_text('[rewards.rm]\nkind = "reward_model"\nmodel = "/models/rm"\ntoken_budget = 8192\n')
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from rewardq.workers.rewards.config import RewardsConfig\n"
        f"config = RewardsConfig.load(Path({str(path)!r}))\n"
        "config.build('rm').fingerprint\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _passes_of_last_call(caplog: pytest.LogCaptureFixture) -> int:
    """Forward passes of the last 64-sample call, from the reward's log."""
    counts = [re.search(r"64 samples in (\d+) forward passes", r.getMessage()) for r in caplog.records]
    return int([m for m in counts if m][-1].group(1))


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


@pytest.fixture
def cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


@pytest.mark.gpu
@pytest.mark.usefixtures("cuda")
@pytest.mark.parametrize("side", ["right", "left"])
def test_on_a_gpu_fp32_scores_match_the_cpu_and_do_not_depend_on_the_batch(
    side: str, classifier_right: Path, classifier_left: Path
) -> None:
    model_dir = classifier_right if side == "right" else classifier_left
    batch = long_tailed_samples(64, seed=2)
    gpu = make_reward(model_dir, dtype="float32")
    assert gpu._ready().device == "cuda"
    large = [s.value for s in gpu.score(batch)]
    for budget in (512, 2048, 65536):
        again = make_reward(model_dir, dtype="float32", token_budget=budget)
        for i in (0, 7, 33):
            alone = again.score([batch[i]])[0].value
            assert large[i] == pytest.approx(alone, abs=TOLERANCE)
    for i in (0, 7, 33):
        assert large[i] == pytest.approx(plain_logits(model_dir, batch[i])[0], abs=1e-4)


@pytest.mark.gpu
@pytest.mark.usefixtures("cuda")
def test_on_a_gpu_auto_is_bfloat16_and_close_to_fp32(classifier_right: Path, samples: list[Sample]) -> None:
    import torch

    bf16 = make_reward(classifier_right)
    assert next(bf16._ready().model.parameters()).dtype == torch.bfloat16
    fp32 = make_reward(classifier_right, dtype="float32")
    for a, b in zip(bf16.score(samples), fp32.score(samples), strict=True):
        assert a.value == pytest.approx(b.value, abs=0.05)


@pytest.mark.gpu
@pytest.mark.usefixtures("cuda")
def test_on_a_gpu_a_budget_that_cannot_fit_fails_at_setup(classifier_right: Path) -> None:
    # The warm-up runs a full token budget: 2**20 rows of 2048 tokens fit on no GPU.
    with pytest.raises(RewardSetupError, match=rf"'rm': out of memory running model {classifier_right}"):
        make_reward(classifier_right, max_length=2048, token_budget=2**31)
