"""A sequence-classification model loaded for scoring, and its padded forward pass.

Rows are always padded on the right, whatever the tokenizer declares, so every real token keeps the
positions and attention it has alone, and the score is read at each row's last real token (from the
attention mask, never by looking for pad ids, which a sequence may itself end with). Decoder models
with a ``score`` head (Llama, Qwen2, Mistral, Gemma, GPT-2 …) are run as base model + head on the
last real token; other classifiers (BERT-style encoders pooling their first token) through their
own forward with the attention mask. A token classifier (a process reward model) is read at given
positions of each row instead: the softmax over its labels, one label's probability per position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
        of ``passes`` (lists of row indices), in that order."""
        values = self._pipelined(rows, passes, lambda ids, lengths, _: self._logits(ids, lengths, label))
        out = [0.0] * len(rows)
        for i, value in zip((i for indices in passes for i in indices), values, strict=True):
            out[i] = value
        return out

    def run_token_passes(
        self,
        rows: Sequence[list[int]],
        passes: Sequence[list[int]],
        positions: Sequence[Sequence[int]],
        label: int,
    ) -> list[list[float]]:
        """Per row, the probability of ``label`` (softmax over the labels) at each of its ``positions``,
        one forward pass per entry of ``passes``, as :meth:`run_passes` runs them."""

        def forward(ids: Any, lengths: Any, indices: list[int]) -> Any:
            return self._token_probabilities(ids, lengths, [positions[i] for i in indices], label)

        values = iter(self._pipelined(rows, passes, forward))
        out: list[list[float]] = [[] for _ in rows]
        for i in (i for indices in passes for i in indices):
            out[i] = [next(values) for _ in positions[i]]
        return out

    def _pipelined(
        self,
        rows: Sequence[list[int]],
        passes: Sequence[list[int]],
        forward: Callable[[Any, Any, list[int]], Any],
    ) -> list[float]:
        """``forward(ids, lengths, indices)`` per pass, its outputs (1-d tensors) concatenated as floats.

        A helper thread builds each pass's padded inputs (in pinned memory on a GPU) while the pass
        before it runs; the outputs stay on the device until the last pass, then come back in one copy.
        """
        import torch

        if not passes:
            return []
        order = [i for indices in passes for i in indices]
        if sorted(order) != list(range(len(rows))):
            raise ValueError(f"the passes cover {len(order)} row indices, not each of {len(rows)} rows once")
        outputs = []
        with ThreadPoolExecutor(1, thread_name_prefix="rewardq-batches") as helper:
            upcoming = helper.submit(self._inputs, [rows[i] for i in passes[0]])
            for k in range(len(passes)):
                ids, lengths = upcoming.result()
                if k + 1 < len(passes):
                    upcoming = helper.submit(self._inputs, [rows[i] for i in passes[k + 1]])
                outputs.append(forward(ids, lengths, passes[k]))
        with torch.inference_mode():
            values: list[float] = torch.cat(outputs).float().cpu().tolist()
        return values

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

        rows = torch.arange(ids.shape[0], device=ids.device)
        return self._head_at(ids, lengths, rows, lengths - 1)[:, label]

    def _token_probabilities(self, ids: Any, lengths: Any, positions: list[Sequence[int]], label: int) -> Any:
        """The probability of ``label`` at each row's ``positions``, flat in row order, on the device."""
        import torch

        rows = torch.tensor([r for r, row in enumerate(positions) for _ in row], dtype=torch.long)
        columns = torch.tensor([p for row in positions for p in row], dtype=torch.long)
        logits = self._head_at(ids, lengths, rows.to(ids.device), columns.to(ids.device))
        with torch.inference_mode():
            return logits.float().softmax(dim=-1)[:, label]

    def _head_at(self, ids: Any, lengths: Any, rows: Any, columns: Any) -> Any:
        """The head's logits (one row per (row, column) pair) at those tokens of the padded ``ids``.

        A decoder with a ``score`` head runs the base model, then the head on those tokens only; other
        models run whole (a sequence classifier's logits are per row, a token classifier's per token).
        """
        import torch

        positions = torch.arange(ids.shape[1], device=ids.device)
        mask = (positions[None, :] < lengths[:, None]).long()
        with torch.inference_mode():
            head = getattr(self.model, "score", None)
            prefix = getattr(self.model, "base_model_prefix", "")
            if isinstance(head, torch.nn.Module) and hasattr(self.model, prefix):
                hidden = getattr(self.model, prefix)(input_ids=ids, attention_mask=mask).last_hidden_state
                return head(hidden[rows, columns])
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            return logits[rows, columns] if logits.dim() == 3 else logits[rows]


HEADS = {"sequence": "ForSequenceClassification", "token": "ForTokenClassification"}


def load_classifier(
    path: Path, dtype: Any, device: str, head: Literal["sequence", "token"] = "sequence"
) -> Classifier:
    """Load the local directory ``path`` as a sequence (``head``: or token) classifier with a trained
    head on ``device``.

    Raises ClassifierLoadError when it is not one (a causal LM, say, whose head would be random).
    """
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    suffix = HEADS[head]
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith(suffix) for a in architectures):
        found = ", ".join(architectures) or "none recorded"
        what = "a reward model" if head == "sequence" else "a process reward model"
        raise ClassifierLoadError(
            f"{path} has no {head}-classification head (architectures: {found}); {what} is saved as *{suffix}"
        )
    auto = getattr(transformers, f"AutoModel{suffix}")
    model, info = auto.from_pretrained(path, dtype=dtype, local_files_only=True, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if k.split(".")[0] in {"score", "classifier"}]
    if missing:
        raise ClassifierLoadError(f"{path}: the classification head's weights are missing ({missing})")
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Classifier(model, tokenizer, device, int(model.config.num_labels), int(pad or 0))
