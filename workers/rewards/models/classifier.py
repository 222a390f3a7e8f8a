"""A sequence-classification model loaded for scoring, and its padded forward pass.

Rows are always padded on the right, whatever the tokenizer declares, so every real token keeps the
positions and attention it has alone, and the score is read at each row's last real token (from the
attention mask, never by looking for pad ids, which a sequence may itself end with). Decoder models
with a ``score`` head (Llama, Qwen2, Mistral, Gemma, GPT-2 …) are run as base model + head on the
last real token; other classifiers (BERT-style encoders pooling their first token) through their
own forward with the attention mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardq.wire.errors import RewardqError


class ClassifierLoadError(RewardqError):
    """Raised when a directory does not hold a usable sequence-classification model."""


@dataclass
class Classifier:
    """A loaded model and tokenizer on one device; ``forward`` scores rows of token ids."""

    model: Any
    tokenizer: Any
    device: str
    num_labels: int
    pad_id: int

    def forward(self, rows: list[list[int]], label: int) -> list[float]:
        """The ``label`` logit of each row (one padded forward pass), as Python floats."""
        import torch

        longest = max(len(r) for r in rows)
        ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        for j, row in enumerate(rows):
            ids[j, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        return self.run(ids.to(self.device), lengths.to(self.device), label)

    def run(self, ids: Any, lengths: Any, label: int) -> list[float]:
        """Score right-padded ``ids`` (rows x longest, on the device) whose rows hold ``lengths`` tokens."""
        import torch

        positions = torch.arange(ids.shape[1], device=ids.device)
        mask = (positions[None, :] < lengths[:, None]).long()
        with torch.inference_mode():
            head = getattr(self.model, "score", None)
            prefix = getattr(self.model, "base_model_prefix", "")
            if isinstance(head, torch.nn.Module) and hasattr(self.model, prefix):
                hidden = getattr(self.model, prefix)(input_ids=ids, attention_mask=mask).last_hidden_state
                rows = torch.arange(ids.shape[0], device=ids.device)
                logits = head(hidden[rows, lengths - 1])
            else:
                logits = self.model(input_ids=ids, attention_mask=mask).logits
            values: list[float] = logits[:, label].float().cpu().tolist()
        return values


def load_classifier(path: Path, dtype: Any, device: str) -> Classifier:
    """Load the local directory ``path`` as a sequence classifier with a trained head on ``device``.

    Raises ClassifierLoadError when it is not one (a causal LM, say, whose head would be random).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        found = ", ".join(architectures) or "none recorded"
        raise ClassifierLoadError(
            f"{path} has no sequence-classification head (architectures: {found}); "
            "a reward model is saved as *ForSequenceClassification"
        )
    model, info = AutoModelForSequenceClassification.from_pretrained(
        path, dtype=dtype, local_files_only=True, output_loading_info=True
    )
    missing = [k for k in info.get("missing_keys", []) if k.split(".")[0] in {"score", "classifier"}]
    if missing:
        raise ClassifierLoadError(f"{path}: the classification head's weights are missing ({missing})")
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Classifier(model, tokenizer, device, int(model.config.num_labels), int(pad or 0))
