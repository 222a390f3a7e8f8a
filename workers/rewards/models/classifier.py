"""A sequence-classification model loaded for scoring, and its padded forward pass.

Rows are always padded on the right, whatever the tokenizer declares, so every real token keeps the
positions and attention it has alone, and the score is read at each row's last real token (from the
attention mask, never by looking for pad ids, which a sequence may itself end with). Decoder models
with a ``score`` head (Llama, Qwen2, Mistral, Gemma, GPT-2 …) are run as base model + head on the
last real token; other classifiers (BERT-style encoders pooling their first token) through their
own forward with the attention mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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

    def run_passes(self, rows: Sequence[list[int]], passes: Sequence[list[int]], label: int) -> list[float]:
        """The ``label`` logit of every row, as Python floats in row order, one forward pass per entry
        of ``passes`` (lists of row indices), in that order.

        A helper thread builds each pass's padded inputs (in pinned memory on a GPU) while the pass
        before it runs; the logits stay on the device until the last pass, then come back in one copy.
        """
        import torch

        if not passes:
            return []
        order = [i for indices in passes for i in indices]
        if sorted(order) != list(range(len(rows))):
            raise ValueError(f"the passes cover {len(order)} row indices, not each of {len(rows)} rows once")
        logits = []
        with ThreadPoolExecutor(1, thread_name_prefix="rewardq-batches") as helper:
            upcoming = helper.submit(self._inputs, [rows[i] for i in passes[0]])
            for k in range(len(passes)):
                ids, lengths = upcoming.result()
                if k + 1 < len(passes):
                    upcoming = helper.submit(self._inputs, [rows[i] for i in passes[k + 1]])
                logits.append(self._logits(ids, lengths, label))
        with torch.inference_mode():
            values = torch.cat(logits).float().cpu().tolist()
        out = [0.0] * len(rows)
        for i, value in zip(order, values, strict=True):
            out[i] = value
        return out

    def run(self, ids: Any, lengths: Any, label: int) -> list[float]:
        """Score right-padded ``ids`` (rows x longest, on the device) whose rows hold ``lengths`` tokens."""
        values: list[float] = self._logits(ids, lengths, label).float().cpu().tolist()
        return values

    def _inputs(self, rows: list[list[int]]) -> tuple[Any, Any]:
        """Right-padded ids and the row lengths of one pass, on the device (on a GPU, copied from pinned
        memory without waiting)."""
        import torch

        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        longest = int(lengths.max())
        ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        real = torch.arange(longest)[None, :] < lengths[:, None]
        ids[real] = torch.tensor([t for r in rows for t in r], dtype=torch.long)  # row-major: row by row
        if self.device == "cpu":
            return ids, lengths
        if self.device.startswith("cuda"):
            ids, lengths = ids.pin_memory(), lengths.pin_memory()
        return ids.to(self.device, non_blocking=True), lengths.to(self.device, non_blocking=True)

    def _logits(self, ids: Any, lengths: Any, label: int) -> Any:
        """The ``label`` logit of each row, a tensor on the device (nothing waits for it here)."""
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
            return logits[:, label]


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
