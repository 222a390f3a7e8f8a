"""The ``embedding_similarity`` reward: the cosine similarity between a completion and its reference
under a sentence-transformers encoder (MiniLM, BGE, E5 … any model ``SentenceTransformer`` loads).

The encoder is loaded in :meth:`setup`, once per worker process per (path, revision, dtype, device),
and shared by every reward that names the same one. A chunk's texts (completions and references, each
distinct text once) are encoded together, sorted by length into batches of ``batch_size``. The value
is in [-1, 1]. Semantics and options are documented in ``docs/rewards-models.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from rewardq.wire.errors import RewardSetupError
from rewardq.workers.rewards.base import Score, ScoreMeta
from rewardq.workers.rewards.models.loading import Dtype, load_shared, model_identity
from rewardq.workers.rewards.rules.reference import ReferenceOptions, ReferenceReward

if TYPE_CHECKING:
    from rewardq.workers.process.resources import WorkerResources


class EmbeddingSimilarityOptions(ReferenceOptions):
    """Options of ``embedding_similarity``: the reference's, then the encoder's (the fields of
    ``ModelOptions`` among them, kept in this order: it is part of the fingerprint)."""

    model: str = Field(min_length=1)
    """The encoder: a local directory or a hub id already in the local cache (nothing is downloaded)."""
    revision: str | None = None
    """The hub revision (branch, tag or commit) of a hub id."""
    max_length: int | None = Field(default=None, ge=1)
    """Tokens kept per text (longer texts are truncated and flagged); default: the encoder's own limit."""
    batch_size: int = Field(default=64, ge=1)
    """Texts per forward pass."""
    dtype: Dtype = "auto"
    """``auto`` (bf16 on a GPU, fp32 on the CPU), ``float32``, ``bfloat16`` or ``float16``."""


class EmbeddingSimilarityReward(ReferenceReward):
    """The cosine similarity of the completion's embedding to its reference's."""

    kind = "embedding_similarity"
    Options = EmbeddingSimilarityOptions
    options: EmbeddingSimilarityOptions
    holds_model: ClassVar[bool] = True
    timeout_default = 300.0

    _encoder: Any = None

    def identity(self) -> dict[str, str]:
        return model_identity(self.options.model, self.options.revision)

    def setup(self, resources: WorkerResources) -> None:
        options = self.options
        self._encoder = load_shared(
            resources, "sentence-transformers", options, _load_encoder, reward=self.name
        )
        limit = self._encoder.max_seq_length
        self._max_length: int = options.max_length if options.max_length is not None else limit

    def score_pairs(self, completions: list[str], references: list[str]) -> list[Score]:
        if self._encoder is None:
            raise RewardSetupError(f"reward {self.name!r} is not set up: call setup() before score()")
        texts = list(dict.fromkeys([*completions, *references]))
        embeddings = self._encode(texts)
        row = {text: i for i, text in enumerate(texts)}
        truncated = self._truncated(texts)
        scores = []
        for completion, reference in zip(completions, references, strict=True):
            a, b = row[completion], row[reference]
            similarity = float((embeddings[a] @ embeddings[b]).clamp(-1.0, 1.0))
            scores.append(Score.ok(similarity, meta=ScoreMeta(truncated=truncated[a] or truncated[b])))
        return scores

    def _encode(self, texts: Sequence[str]) -> Any:
        import torch

        encoder = self._encoder
        with torch.inference_mode():
            embeddings = encoder.encode(
                list(texts),
                batch_size=self.options.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
                processing_kwargs={"text": {"max_length": self._max_length}},
            )
        return embeddings.float()

    def _truncated(self, texts: Sequence[str]) -> list[bool]:
        """Whether each text has more tokens than the encoder keeps."""
        tokenizer = self._encoder.tokenizer
        lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
        return [n > self._max_length for n in lengths]


def _load_encoder(path: Path, dtype: Any, device: str) -> Any:
    """A ``SentenceTransformer`` from local files (``path``: the revision's snapshot), in eval mode on
    ``device``."""
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(
        str(path), device=device, local_files_only=True, model_kwargs={"dtype": dtype}
    )
    return encoder.eval()
