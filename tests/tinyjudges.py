"""Tiny causal LMs for judge tests, built offline on top of ``tests/tinymodels.py``'s random Qwen2.

    build_peaky_lm(dir)                   # random weights scaled up: greedy replies vary with the prompt
    build_trained_judge(dir, examples)    # trained on the spot to answer each chat with its reply

The random LM of ``tinymodels`` answers every prompt with the same token (its logits are nearly
flat), which proves little about batching; scaling its weights makes greedy replies depend on the
prompt. A trained judge gives controlled replies (``[[7]]``, an unparseable one, …) through the real
``generate`` path. Both are deterministic and cached on disk by their arguments (and the base weights),
so a directory that outlives the session (``.cache/``) spares the training next time.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.tinymodels import _cached, _locked, _mark, build_causal_lm

Chat = list[dict[str, str]]


def build_peaky_lm(directory: Path, scale: float = 10.0) -> Path:
    """The tiny random LM with every weight matrix multiplied by ``scale``."""
    spec = {"what": "peaky_lm", "scale": scale}
    with _locked(directory):
        if not _cached(directory, spec):
            import torch
            from transformers import AutoModelForCausalLM

            base = build_causal_lm(directory.with_name(directory.name + "-base"))
            model = AutoModelForCausalLM.from_pretrained(base)
            with torch.no_grad():
                for weight in model.parameters():
                    if weight.ndim == 2:
                        weight.mul_(scale)
            _save(model, base, directory)
            _mark(directory, spec)
    return directory


def build_trained_judge(directory: Path, examples: Sequence[tuple[Chat, str]], steps: int = 80) -> Path:
    """The tiny LM trained to answer each example's chat (rendered by its chat template) with its reply."""
    base = build_causal_lm(directory.with_name(directory.name + "-base"))
    weights = hashlib.sha256((base / "model.safetensors").read_bytes()).hexdigest()
    spec = {"what": "trained_judge", "base": weights, "examples": [list(e) for e in examples], "steps": steps}
    with _locked(directory):
        if not _cached(directory, spec):
            _save(_trained(base, examples, steps), base, directory)
            _mark(directory, spec)
    return directory


def _trained(base: Path, examples: Sequence[tuple[Chat, str]], steps: int) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    rows = []
    for chat, reply in examples:
        prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(reply + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids, reply_ids))
    batch = _batch(rows, tokenizer.pad_token_id)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(steps):  # one batch: on a tiny model, a step's cost is per call, not per token
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    return model.eval()


def _batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded inputs with the loss on the replies only."""
    import torch

    width = max(len(p) + len(r) for p, r in rows)
    input_ids = torch.full((len(rows), width), pad_id)
    labels = torch.full_like(input_ids, -100)
    mask = torch.zeros_like(input_ids)
    for i, (prompt_ids, reply_ids) in enumerate(rows):
        end = len(prompt_ids) + len(reply_ids)
        input_ids[i, :end] = torch.tensor(prompt_ids + reply_ids)
        labels[i, len(prompt_ids) : end] = torch.tensor(reply_ids)
        mask[i, :end] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _save(model: Any, base: Path, directory: Path) -> None:
    """``model`` into ``directory`` with ``base``'s tokenizer files."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (base / name).exists():
            shutil.copy(base / name, directory / name)
