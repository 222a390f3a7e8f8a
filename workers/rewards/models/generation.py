"""Batched generation for in-worker judges: length-sorted, left-padded ``generate`` calls whose replies
do not depend on the batch a sample shares.

Prompts are packed by :func:`rewardq.workers.rewards.models.batching.pack`, longest first, into calls
of at most ``batch_size`` rows and ``token_budget`` padded tokens (rows * (longest prompt +
``max_new_tokens``)); replies come back in input order. Greedy decoding takes the arg-max. Sampling
draws each sample's tokens from a random stream of its own, seeded from the decoding seed and the
sample's prompt tokens, so a sample gets the same reply alone or in any batch. Only the
:class:`Decoding` settings steer generation: the model's own ``generation_config`` (sampling
defaults, repetition penalty) is overridden.

torch and transformers are imported when generation runs, not with this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rewardq.workers.rewards.models.batching import pack, run_packed

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Decoding:
    """How replies are decoded: greedy (``temperature`` 0) or seeded sampling."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int | None = None
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class Reply:
    """One generated reply and what the audit records about it."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finished: bool
    """Whether the reply ended on an end-of-sequence token (False: cut at ``max_new_tokens``)."""


class BatchGenerator:
    """A causal LM and its tokenizer, generating replies for tokenised prompts in left-padded batches."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = _stop_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else min(self.stop_ids)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        decoding: Decoding,
        batch_size: int,
        token_budget: int | None = None,
    ) -> list[Reply]:
        """One reply per prompt (token ids), in input order; calls of at most ``batch_size`` rows and
        ``token_budget`` padded tokens (rows * (longest prompt + ``max_new_tokens``))."""
        lengths = [len(p) for p in prompts]
        packing = pack(lengths, token_budget, max_rows=batch_size, extra=decoding.max_new_tokens)
        return run_packed(prompts, packing, lambda rows: self._generate_batch(rows, decoding))

    def _generate_batch(self, rows: list[Sequence[int]], decoding: Decoding) -> list[Reply]:
        import torch
        from transformers import LogitsProcessorList

        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, row in enumerate(rows):  # left padding: every prompt ends where generation starts
            input_ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
        processors = LogitsProcessorList()
        if not decoding.greedy:
            processors.append(SeededSampler(decoding, [sample_seed(decoding.seed, row) for row in rows]))
        device = self.model.device
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                generation_config=self._generation_config(decoding),
                logits_processor=processors,
            )
        return [
            self._reply(len(row), tokens)
            for row, tokens in zip(rows, output[:, width:].tolist(), strict=True)
        ]

    def _generation_config(self, decoding: Decoding) -> Any:
        from transformers import GenerationConfig

        # Greedy over the processors' output: SeededSampler leaves one finite logit per row when sampling.
        return GenerationConfig(
            max_new_tokens=decoding.max_new_tokens,
            min_new_tokens=0,
            do_sample=False,
            num_beams=1,
            num_return_sequences=1,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.stop_ids),
        )

    def _reply(self, prompt_tokens: int, tokens: list[int]) -> Reply:
        end = next((k for k, t in enumerate(tokens) if t in self.stop_ids), None)
        kept = tokens if end is None else tokens[:end]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Reply(text, prompt_tokens, len(kept), end is not None)


def sample_seed(seed: int, prompt: Sequence[int]) -> int:
    """A sample's own seed: a hash of the decoding seed and its prompt tokens (not of its batch)."""
    digest = hashlib.sha256(f"{seed}:{','.join(map(str, prompt))}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class SeededSampler:
    """A logits processor that samples each row's next token from that row's own random stream.

    Temperature, top-k and top-p shape each row's distribution; one uniform draw per row and step
    (from a CPU generator, the same on every device) picks the token by inverse CDF; the returned
    scores keep only that token, so greedy selection emits it.
    """

    def __init__(self, decoding: Decoding, seeds: Sequence[int]) -> None:
        import torch

        self.decoding = decoding
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        probs = torch.softmax(_filtered(scores.float() / self.decoding.temperature, self.decoding), dim=-1)
        draws = torch.stack([torch.rand((), generator=g) for g in self.generators]).to(probs.device)
        cumulative = probs.cumsum(dim=-1)
        # The first token whose cumulative mass exceeds the draw: never one of probability 0.
        tokens = (cumulative <= draws.unsqueeze(-1) * cumulative[:, -1:]).sum(dim=-1)
        tokens = tokens.clamp(max=probs.shape[-1] - 1)
        chosen = torch.full_like(scores, float("-inf"))
        chosen.scatter_(1, tokens.unsqueeze(-1), 0.0)
        return chosen  # type: ignore[return-value]


def _filtered(logits: torch.Tensor, decoding: Decoding) -> torch.Tensor:
    """``logits`` with the tokens outside top-k and top-p set to -inf (the most likely token always stays)."""
    import torch

    if decoding.top_k is not None and decoding.top_k < logits.shape[-1]:
        kth = torch.topk(logits, decoding.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if decoding.top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        drop = cumulative - torch.softmax(ordered, dim=-1) >= decoding.top_p  # mass before this token
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """The end-of-sequence ids of the tokenizer and of the model's generation config."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(v for v in value if isinstance(v, int))
    if not ids:
        raise ValueError("the model and its tokenizer declare no end-of-sequence token")
    return ids
