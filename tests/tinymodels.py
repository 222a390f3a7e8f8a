"""Tiny models built offline for tests and benches: nothing is downloaded.

A byte-level BPE tokenizer is trained on the spot (``tokenizers``) with ChatML special tokens, a
ChatML chat template and a pad token; models are random-weight Qwen2 configs saved with
``save_pretrained``. Builders are deterministic for a given seed and cached on disk by their
arguments, so a session builds each model once.

    build_causal_lm(dir)                      # Qwen2ForCausalLM, for judges and vLLM
    build_classifier(dir, num_labels=1)       # Qwen2ForSequenceClassification, a reward model
    build_token_classifier(dir)               # Qwen2ForTokenClassification with 2 labels and <extra_0>: a PRM
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The answer is 42. Reward: 1. Score [[7]]. The completion is correct and well formatted.",
    "<think>Let me add 2 and 3 to get 5.</think><answer>5</answer>",
    "Please rate the following response on a scale of 0 to 10 and explain why.",
    "system user assistant: The quick brown fox jumps over the lazy dog, 0123456789.",
    "Solve for x: 2x + 3 = 7, so x = 2. Final answer: \\boxed{2}",
    "yes no good bad correct incorrect A B C D true false",
]

# Small enough to build in a second and run on two CPU cores; shapes as in Qwen2. The head size
# (hidden_size / num_attention_heads = 32) is the smallest vLLM's CPU attention supports.
TINY_SHAPE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 2048,
}


PRM_STEP_TAG = "<extra_0>"  # Qwen2.5-Math-PRM's step tag


def build_tokenizer(
    directory: Path, vocab_size: int = 512, padding_side: str = "right", extra_special: tuple[str, ...] = ()
) -> Any:
    """A trained BPE tokenizer with ChatML special tokens (and ``extra_special`` ones), saved to
    ``directory``; returns it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + list(extra_special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side=padding_side,
        additional_special_tokens=list(extra_special),
    )
    fast.chat_template = CHATML_TEMPLATE
    directory.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(directory)
    return fast


def _config(tokenizer: Any, **extra: Any) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **TINY_SHAPE,
        **extra,
    )


def _cached(directory: Path, spec: dict[str, Any]) -> bool:
    marker = directory / "rewardq-tiny.json"
    return marker.exists() and json.loads(marker.read_text()) == spec


def _mark(directory: Path, spec: dict[str, Any]) -> None:
    (directory / "rewardq-tiny.json").write_text(json.dumps(spec))


def build_causal_lm(directory: Path, seed: int = 0) -> Path:
    """A tiny random Qwen2ForCausalLM with a ChatML tokenizer in ``directory`` (built once)."""
    spec = {"what": "causal_lm", "seed": seed, **TINY_SHAPE}
    with _locked(directory):
        if not _cached(directory, spec):
            import torch
            from transformers import Qwen2ForCausalLM

            tokenizer = build_tokenizer(directory)
            torch.manual_seed(seed)
            model = Qwen2ForCausalLM(_config(tokenizer))
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            model.generation_config.eos_token_id = tokenizer.eos_token_id
            model.save_pretrained(directory)
            _mark(directory, spec)
    return directory


def build_classifier(
    directory: Path, num_labels: int = 1, seed: int = 0, padding_side: str = "right"
) -> Path:
    """A tiny random Qwen2ForSequenceClassification (a reward model) in ``directory`` (built once).

    ``padding_side`` is what its tokenizer declares, to test scorers against both.
    """
    spec = {
        "what": "classifier",
        "num_labels": num_labels,
        "seed": seed,
        "padding_side": padding_side,
        **TINY_SHAPE,
    }
    with _locked(directory):
        if not _cached(directory, spec):
            import torch
            from transformers import Qwen2ForSequenceClassification

            tokenizer = build_tokenizer(directory, padding_side=padding_side)
            torch.manual_seed(seed)
            model = Qwen2ForSequenceClassification(_config(tokenizer, num_labels=num_labels))
            model.save_pretrained(directory)
            _mark(directory, spec)
    return directory


def build_token_classifier(directory: Path, num_labels: int = 2, seed: int = 0) -> Path:
    """A tiny random Qwen2ForTokenClassification (a process reward model, Qwen2.5-Math-PRM's head shape)
    whose tokenizer has the step tag :data:`PRM_STEP_TAG` as a special token, in ``directory`` (built
    once)."""
    spec = {"what": "token_classifier", "num_labels": num_labels, "seed": seed, **TINY_SHAPE}
    with _locked(directory):
        if not _cached(directory, spec):
            import torch
            from transformers import Qwen2ForTokenClassification

            tokenizer = build_tokenizer(directory, extra_special=(PRM_STEP_TAG,))
            torch.manual_seed(seed)
            model = Qwen2ForTokenClassification(_config(tokenizer, num_labels=num_labels))
            model.save_pretrained(directory)
            _mark(directory, spec)
    return directory


class _locked:
    """An exclusive file lock beside ``directory``, so parallel test processes build a model once."""

    def __init__(self, directory: Path) -> None:
        directory.parent.mkdir(parents=True, exist_ok=True)
        self._path = directory.parent / f".{directory.name}.lock"

    def __enter__(self) -> None:
        self._file = self._path.open("w")
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
