"""Process-reward-model throughput on long-tailed solutions of 2 to 8 steps, in tokens/s.

(a) rewardq end to end: RewardClient → Redis → one `rewardq worker` (process_reward_model) → SQLite audit;
(b) a bare torch.inference_mode() loop over the same tagged, templated texts: pre-tokenised, length-sorted
    token-budget passes, the softmax over the labels at every step tag;
(e) the reward's own ``score`` in this process (split, tag, render, tokenize, pack, passes, aggregate).
Figures are ratios measured side by side in one run, as bench/reward_model.py measures ``reward_model``
(whose shapes, samples' words and services this reuses). The model is built offline (random weights):

    .venv/bin/python bench/prm_throughput.py                              # CPU, a small Qwen2-shaped PRM
    .venv/bin/python bench/prm_throughput.py --device cuda --shape 0.5b   # GPU, Qwen2-0.5B-shaped, bf16
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _services import redis_server, sqlite_database, workers  # noqa: E402
from reward_model import SHAPES, WORDS, sync  # noqa: E402

from rewardq import RewardClient, Settings  # noqa: E402
from rewardq.wire.schema import Sample  # noqa: E402
from rewardq.workers.rewards.models.batching import pack  # noqa: E402
from rewardq.workers.rewards.models.chat_tokens import tokenize_conversations  # noqa: E402
from rewardq.workers.rewards.models.steps import StepOptions, tagged_conversation  # noqa: E402
from tests.tinymodels import PRM_STEP_TAG, build_tokenizer  # noqa: E402


def build_prm(directory: Path, shape: str) -> Path:
    """A random-weight 2-label Qwen2ForTokenClassification of ``shape``, its step tag a special token
    (built once)."""
    marker = directory / "bench-shape.txt"
    if marker.exists() and marker.read_text() == shape:
        return directory
    import torch
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    tokenizer = build_tokenizer(directory, extra_special=(PRM_STEP_TAG,))
    dims = dict(SHAPES[shape])
    vocab = max(dims.pop("vocab_size"), len(tokenizer))
    fields: dict[str, Any] = {
        **dims,
        "vocab_size": vocab,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "max_position_embeddings": 4096,
        "num_labels": 2,
        "tie_word_embeddings": True,
    }
    config = Qwen2Config(**fields)
    torch.manual_seed(0)
    model = Qwen2ForTokenClassification(config)
    if shape == "0.5b":
        model = model.bfloat16()
    model.save_pretrained(directory)
    marker.write_text(shape)
    return directory


def make_solutions(n: int, seed: int = 0) -> list[Sample]:
    """2 to 8 steps each; 90% of the steps short, 10% several times longer."""
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        steps = []
        for _ in range(rng.randint(2, 8)):
            words = rng.randint(8, 30) if rng.random() < 0.9 else rng.randint(80, 200)
            steps.append(" ".join(rng.choice(WORDS) for _ in range(words)))
        prompt = f"Question {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 25)))
        samples.append(Sample(prompt=prompt, completion="\n\n".join(steps)))
    return samples


def tagged_rows(tokenizer: Any, samples: list[Sample]) -> list[list[int]]:
    """The token ids the PRM runs on: each sample split, tagged and rendered as the kind does."""
    conversations = []
    for sample in samples:
        built = tagged_conversation(sample, StepOptions())
        assert not isinstance(built, type(None)) and isinstance(built, tuple)
        conversations.append(built[:2])
    return tokenize_conversations(tokenizer, conversations).ids


def bare_loop(model: Any, rows: list[list[int]], tag: int, budget: int, device: str) -> float:
    """(b): seconds for the sorted token-budget passes and the label-1 probability at each tag."""
    import torch

    batches = []
    for indices in pack([len(r) for r in rows], budget).passes:
        longest = max(len(rows[i]) for i in indices)
        ids = torch.zeros((len(indices), longest), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, i in enumerate(indices):
            ids[j, : len(rows[i])] = torch.tensor(rows[i])
            mask[j, : len(rows[i])] = 1
        batches.append((ids.to(device), mask.to(device)))
    sync(device)
    start = time.perf_counter()
    out = []
    with torch.inference_mode():
        for ids, mask in batches:
            logits = model(input_ids=ids, attention_mask=mask).logits
            out.append(logits[ids == tag].float().softmax(dim=-1)[:, 1])
        torch.cat(out).cpu()
    sync(device)
    return time.perf_counter() - start


class InProcess:
    """(e): the ``process_reward_model`` reward set up in this process; :meth:`seconds` scores ``samples``."""

    def __init__(self, model_dir: Path, dtype: str, budget: int, samples: list[Sample]) -> None:
        from rewardq.workers.process.resources import WorkerResources
        from rewardq.workers.rewards.models.process_reward_model import (
            ProcessRewardModel,
            ProcessRewardModelOptions,
        )

        options = ProcessRewardModelOptions.model_validate(
            {"model": str(model_dir), "dtype": dtype, "token_budget": budget, "max_length": min(4096, budget)}
        )
        self.reward = ProcessRewardModel("prm", options)
        self.reward.setup(WorkerResources(Settings()))
        self.samples = samples
        self.reward.score(samples[:8])  # warm-up

    def seconds(self) -> float:
        start = time.perf_counter()
        scores = self.reward.score(self.samples)
        seconds = time.perf_counter() - start
        assert all(s.status == "ok" for s in scores), "a sample was not scored"
        return seconds


@contextlib.contextmanager
def queued(model_dir: Path, dtype: str, budget: int, samples: list[Sample]) -> Iterator[Callable[[], float]]:
    """(a): a private redis-server, one worker and a SQLite audit; yields a function that times one
    submission of ``samples`` through them."""
    with tempfile.TemporaryDirectory() as d:
        config = Path(d) / "rewards.toml"
        config.write_text(
            f'[rewards.prm]\nkind = "process_reward_model"\nmodel = "{model_dir}"\ndtype = "{dtype}"\n'
            f"token_budget = {budget}\nmax_length = {min(4096, budget)}\n"
        )
        with redis_server() as broker, sqlite_database() as database:
            settings = Settings.from_env({}, broker_url=broker, database_url=database, rewards=config)
            worker_args = ("--rewards", "prm", "--config", str(config), "--loglevel", "WARNING")
            with (
                workers(1, broker, database, *worker_args),
                RewardClient(settings.with_(chunk_size=len(samples))) as client,
            ):
                client.score(samples[:8], {"prm": 1.0}, run_id="warm-up", timeout=600)
                runs = iter(range(1 << 30))

                def seconds() -> float:
                    start = time.perf_counter()
                    result = client.score(samples, {"prm": 1.0}, run_id=f"bench-{next(runs)}", timeout=600)
                    assert all(s == "ok" for s in result.statuses["prm"]), "a sample was not scored"
                    return time.perf_counter() - start

                yield seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--token-budget", type=int, default=None, help="default 4096 (cpu), 65536 (cuda)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-queue", action="store_true", help="only (b) and (e), in process")
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "rewardq-bench-models")
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the worker too
    dtype = "bfloat16" if args.device == "cuda" else "float32"
    budget = args.token_budget or (65536 if args.device == "cuda" else 4096)
    model_dir = build_prm(args.models / f"prm-{args.shape}", args.shape)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForTokenClassification.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    model = model.to(args.device).eval()
    [tag] = tokenizer(PRM_STEP_TAG, add_special_tokens=False)["input_ids"]
    samples = make_solutions(args.samples)
    rows = tagged_rows(tokenizer, samples)
    tokens = sum(len(r) for r in rows)
    steps = sum(r.count(tag) for r in rows)

    # The machine's load moves more than the differences measured: (a), (b) and (e) run in turn in each
    # round, and each ratio is the median of the rounds' ratios.
    bare_loop(model, rows[:32], tag, budget, args.device)  # warm-up
    local = InProcess(model_dir, dtype, budget, samples)
    nothing = contextlib.nullcontext(lambda: float("nan"))
    rounds = []
    with nothing if args.skip_queue else queued(model_dir, dtype, budget, samples) as end_to_end:
        for _ in range(args.repeat):
            b = bare_loop(model, rows, tag, budget, args.device)
            rounds.append({"a": end_to_end(), "b": b, "e": local.seconds()})
    rate = {name: tokens / statistics.median(r[name] for r in rounds) for name in "abe"}
    lengths = sorted(len(r) for r in rows)
    print(
        f"process_reward_model, {args.shape} Qwen2-shaped PRM, {args.device} {dtype}, {len(samples)} samples,"
        f" {steps:,} steps, {tokens:,} tokens (median {lengths[len(lengths) // 2]}, max {lengths[-1]}), "
        f"token_budget {budget}, {args.repeat} interleaved rounds (medians)"
    )
    print(f"(a) rewardq end to end (queue, worker, audit): {rate['a']:>12,.0f} tokens/s")
    print(f"(b) bare inference_mode loop, sorted batches:   {rate['b']:>12,.0f} tokens/s")
    print(f"(e) reward.score() in process:                 {rate['e']:>12,.0f} tokens/s")
    for name, note in (("a", "aim >= 0.9"), ("e", "the reward's own path: tag, render, tokenize, passes")):
        ratios = sorted(r["b"] / r[name] for r in rounds)
        spread = f"per round {ratios[0]:.2f}-{ratios[-1]:.2f}"
        print(f"({name})/(b) = {statistics.median(ratios):.2f}   {spread}   ({note})")


if __name__ == "__main__":
    main()
