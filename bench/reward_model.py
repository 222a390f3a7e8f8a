"""Reward-model throughput on a long-tailed length mix (most completions short, a few long), in tokens/s.

(a) rewardq end to end: RewardClient → Redis → one `rewardq worker` (reward_model kind) → SQLite audit;
(b) a bare torch.inference_mode() forward loop over the same pre-tokenised, length-sorted batches;
(c) what trainers do today: arrival order, a fixed batch size, padded to each batch's longest;
(d) 64 submissions of 8 samples in flight at once (coalesced by the worker) against one 512-sample task;
(e) the reward's own ``score`` in this process (render, tokenize, pack, forward passes, scores): what
(a) costs without the queue, the worker's task and the audit.
Figures are ratios measured side by side in one run. The model is built offline (random weights, a
tokenizer trained on the spot), so the command needs only the repo and its venv:

    .venv/bin/python bench/reward_model.py                              # CPU, a small Qwen2-shaped model
    .venv/bin/python bench/reward_model.py --device cuda --shape 0.5b   # GPU, Qwen2-0.5B-shaped, bf16
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _services import redis_server, sqlite_database, workers  # noqa: E402

from rewardq import RewardClient, Settings  # noqa: E402
from rewardq.wire.schema import Sample  # noqa: E402
from rewardq.workers.rewards.models.batching import pack  # noqa: E402
from rewardq.workers.rewards.models.chat_tokens import encode, render  # noqa: E402
from tests.tinymodels import CORPUS, build_tokenizer  # noqa: E402

SHAPES: dict[str, dict[str, int]] = {
    "small": {
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 512,
    },
    # Qwen2-0.5B's shape: 24 layers, hidden 896, 14 heads (2 KV heads), a 151,936-token vocabulary.
    "0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
    },
}
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, no sparsity
WORDS = sorted({w for line in CORPUS for w in line.split()})


def build_model(directory: Path, shape: str) -> Path:
    """A random-weight Qwen2ForSequenceClassification of ``shape`` with a ChatML tokenizer (built once)."""
    marker = directory / "bench-shape.txt"
    if marker.exists() and marker.read_text() == shape:
        return directory
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    tokenizer = build_tokenizer(directory)
    dims = dict(SHAPES[shape])
    vocab = max(dims.pop("vocab_size"), len(tokenizer))
    fields: dict[str, Any] = {
        **dims,
        "vocab_size": vocab,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "max_position_embeddings": 4096,
        "num_labels": 1,
        "tie_word_embeddings": True,
    }
    torch.manual_seed(0)
    model = Qwen2ForSequenceClassification(Qwen2Config(**fields))
    if shape == "0.5b":
        model = model.bfloat16()  # half the disk; the worker and loops load it in the dtype they run
    model.save_pretrained(directory)
    marker.write_text(shape)
    return directory


def make_samples(n: int, seed: int = 0) -> list[Sample]:
    """Long-tailed completion lengths, as in rollouts: 90% short, 10% several times longer."""
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        words = rng.randint(15, 80) if rng.random() < 0.9 else rng.randint(300, 700)
        completion = " ".join(rng.choice(WORDS) for _ in range(words))
        prompt = f"Question {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 25)))
        samples.append(Sample(prompt=[{"role": "user", "content": prompt}], completion=completion))
    return samples


def load(model_dir: Path, device: str, dtype: Any) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    torch.manual_seed(0)
    return tokenizer, model


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def bare_loop(model: Any, rows: list[list[int]], budget: int, device: str) -> tuple[float, float]:
    """(b): seconds for the length-sorted, token-budget passes, tensors built beforehand; efficiency."""
    import torch

    packing = pack([len(r) for r in rows], budget)
    batches = []
    for indices in packing.passes:
        longest = max(len(rows[i]) for i in indices)
        ids = torch.full((len(indices), longest), 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, i in enumerate(indices):
            ids[j, : len(rows[i])] = torch.tensor(rows[i])
            mask[j, : len(rows[i])] = 1
        batches.append((ids.to(device), mask.to(device)))
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for ids, mask in batches:
            model(input_ids=ids, attention_mask=mask)
    sync(device)
    return time.perf_counter() - start, packing.efficiency


def trainer_loop(
    model: Any, tokenizer: Any, texts: list[str], batch: int, device: str
) -> tuple[float, float]:
    """(c): arrival order, ``batch`` texts per pass, tokenized and padded per batch as trainers do."""
    import torch

    real = padded = 0
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for k in range(0, len(texts), batch):
            inputs = tokenizer(
                texts[k : k + batch], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(device)
            model(**inputs)
            real += int(inputs["attention_mask"].sum())
            padded += inputs["attention_mask"].numel()
    sync(device)
    return time.perf_counter() - start, real / padded


def in_process(model_dir: Path, dtype: str, budget: int, max_length: int, samples: list[Sample]) -> float:
    """(e): seconds for the ``reward_model`` reward's ``score`` over ``samples``, in this process."""
    from rewardq.workers.process.resources import WorkerResources
    from rewardq.workers.rewards.models.reward_model import RewardModelOptions, RewardModelReward

    options = RewardModelOptions.model_validate(
        {"model": str(model_dir), "dtype": dtype, "token_budget": budget, "max_length": max_length}
    )
    reward = RewardModelReward("rm", options)
    reward.setup(WorkerResources(Settings()))
    reward.score(samples[:8])  # warm-up
    start = time.perf_counter()
    scores = reward.score(samples)
    seconds = time.perf_counter() - start
    assert all(s.status == "ok" for s in scores), "a sample was not scored"
    reward.close()
    return seconds


def end_to_end(settings: Settings, samples: list[Sample], groups: int, repeat: int) -> float:
    """(a)/(d): best seconds to score ``samples`` as ``groups`` submissions in flight at once."""
    size = len(samples) // groups
    best = float("inf")
    with RewardClient(settings.with_(chunk_size=size)) as client:
        client.score(samples[:8], {"rm": 1.0}, run_id="warm-up", timeout=600)
        for r in range(repeat):
            start = time.perf_counter()
            handles = [
                client.submit(samples[k * size : (k + 1) * size], {"rm": 1.0}, run_id=f"bench-{groups}-{r}")
                for k in range(groups)
            ]
            results = [h.get(timeout=600) for h in handles]
            best = min(best, time.perf_counter() - start)
            del handles  # their pending results are released while the client can still reach Redis
            assert all(s == "ok" for res in results for s in res.statuses["rm"]), "a sample was not scored"
    return best


def queued_seconds(
    model_dir: Path, dtype: str, budget: int, max_length: int, samples: list[Sample], repeat: int
) -> tuple[float, float]:
    """(a) and (d) through a private redis-server, one worker and a SQLite audit."""
    with tempfile.TemporaryDirectory() as d:
        config = Path(d) / "rewards.toml"
        config.write_text(
            f'[rewards.rm]\nkind = "reward_model"\nmodel = "{model_dir}"\ndtype = "{dtype}"\n'
            f"token_budget = {budget}\nmax_length = {max_length}\n"
        )
        with redis_server() as broker, sqlite_database() as database:
            settings = Settings.from_env({}, broker_url=broker, database_url=database, rewards=config)
            worker_args = ("--rewards", "rm", "--config", str(config), "--loglevel", "WARNING")
            with workers(1, broker, database, *worker_args):
                one = end_to_end(settings, samples, 1, repeat)
                many = end_to_end(settings, samples, len(samples) // 8, repeat)
    return one, many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--token-budget", type=int, default=None, help="default 4096 (cpu), 65536 (cuda)")
    parser.add_argument("--trainer-batch", type=int, default=16, help="(c)'s fixed batch size")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--skip-queue", action="store_true", help="only (b) and (c), in process (no redis-server needed)"
    )
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "rewardq-bench-models")
    args = parser.parse_args()
    import torch

    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the worker too
    dtype_name = "bfloat16" if args.device == "cuda" else "float32"
    budget = args.token_budget or (65536 if args.device == "cuda" else 4096)
    model_dir = build_model(args.models / args.shape, args.shape)
    tokenizer, model = load(model_dir, args.device, getattr(torch, dtype_name))
    samples = make_samples(args.samples)
    rows = [e.ids or [] for e in encode(tokenizer, samples, None, "left")]
    texts = [render(tokenizer, s)[0] for s in samples]
    tokens = sum(len(r) for r in rows)

    bare_loop(model, rows[:32], budget, args.device)  # warm-up
    bare = [bare_loop(model, rows, budget, args.device) for _ in range(args.repeat)]
    trainer = [
        trainer_loop(model, tokenizer, texts, args.trainer_batch, args.device) for _ in range(args.repeat)
    ]
    b_seconds, efficiency = min(bare)
    c_seconds, c_efficiency = min(trainer)
    max_length = min(4096, budget)
    e_seconds = min(
        in_process(model_dir, dtype_name, budget, max_length, samples) for _ in range(args.repeat)
    )

    queue = (float("nan"), float("nan"))
    if not args.skip_queue:
        queue = queued_seconds(model_dir, dtype_name, budget, max_length, samples, args.repeat)
    a_seconds, d_seconds = queue

    seconds = {"a": a_seconds, "b": b_seconds, "c": c_seconds, "e": e_seconds}
    rate = {name: tokens / s for name, s in seconds.items()}
    many = tokens / d_seconds
    lengths = sorted(len(r) for r in rows)
    print(
        f"reward_model, {args.shape} Qwen2-shaped model, {args.device} {dtype_name}, {len(samples)} samples, "
        f"{tokens:,} tokens (median {lengths[len(lengths) // 2]}, p90 {lengths[len(lengths) * 9 // 10]}, "
        f"max {lengths[-1]}), token_budget {budget}, best of {args.repeat}"
    )
    print(f"(a) rewardq end to end (queue, worker, audit): {rate['a']:>12,.0f} tokens/s")
    print(f"(b) bare inference_mode loop, sorted batches:   {rate['b']:>12,.0f} tokens/s")
    print(f"(c) arrival order, batch {args.trainer_batch:<3}:                  {rate['c']:>12,.0f} tokens/s")
    print(f"(d) 64-way 8-sample submissions, coalesced:     {many:>12,.0f} tokens/s")
    print(f"(e) reward.score() in process:                 {rate['e']:>12,.0f} tokens/s")
    print(f"(a)/(b) = {rate['a'] / rate['b']:.2f}   (aim >= 0.9)")
    print(f"(e)/(b) = {rate['e'] / rate['b']:.2f}   (the reward's own path: render, tokenize, pack, passes)")
    print(f"(a)/(e) = {rate['a'] / rate['e']:.2f}   (queue, task and audit around it)")
    print(f"(a)/(c) = {rate['a'] / rate['c']:.2f}   (aim >= 2)")
    print(f"padding efficiency, token-budget packing = {efficiency:.3f}   (aim >= 0.85)")
    print(f"padding efficiency, arrival order        = {c_efficiency:.3f}")
    print(f"(d)/(a) = {many / rate['a']:.2f}   (aim >= 0.8)")
    if args.device == "cuda":
        embedding = model.get_input_embeddings().weight.numel()
        params = sum(p.numel() for p in model.parameters()) - embedding
        name = torch.cuda.get_device_name()
        peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
        for label, value in (("a", rate["a"]), ("b", rate["b"])):
            tflops = 2 * params * value / 1e12
            share = f", {tflops / peak:.1%} of {name}'s {peak:.0f} TFLOP/s bf16 peak" if peak else ""
            per_token = f"2 x {params / 1e6:.0f}M non-embedding params per token"
            print(f"({label}) ~{tflops:.1f} TFLOP/s ({per_token}){share}")


if __name__ == "__main__":
    main()
