"""Loading Hugging Face models for reward kinds: one copy per process, identified for the audit.

A model is named by a local path or a hub id; there is no hub access at run time, so a hub id must
already be in the local Hugging Face cache. :class:`ModelOptions` are the options that name it;
:func:`load_shared` loads it for a reward, keyed by (loader, resolved path, revision, dtype, device), so
every reward of a process naming the same model shares one copy. :func:`model_identity` says which
weights a score came from without loading them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, get_args

from pydantic import Field

from rewardq.wire.errors import RewardSetupError
from rewardq.workers.rewards.base import RewardOptions

if TYPE_CHECKING:
    import torch

    from rewardq.workers.process.resources import WorkerResources

T = TypeVar("T")
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES: tuple[str, ...] = get_args(Dtype)
# Files that say which weights a directory holds; hashed with their sizes (not their contents: a
# multi-GB checkpoint is not read to fingerprint it; the index and config pin the tensors).
_IDENTITY_FILES = ("config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


class ModelSpec(Protocol):
    """Which model a reward loads, as :func:`load_shared` reads it from the reward's options."""

    @property
    def model(self) -> str: ...
    @property
    def revision(self) -> str | None: ...
    @property
    def dtype(self) -> str: ...


class ModelOptions(RewardOptions):
    """The options that name a reward's model, first among its options (``local_judge``,
    ``reward_model``). ``embedding_similarity`` declares the same three after its reference options:
    the order of a kind's options is part of its fingerprint."""

    model: str = Field(min_length=1)
    """A local directory, or a hub id already in the local Hugging Face cache (nothing is downloaded)."""
    revision: str | None = None
    """The hub revision (branch, tag or commit) of a hub id."""
    dtype: Dtype = "auto"
    """``auto`` (bfloat16 on a GPU, float32 on the CPU), ``float32``, ``bfloat16`` or ``float16``."""


def resolve_path(model: str, revision: str | None = None) -> Path | None:
    """The local directory of ``model``: the path itself, or its snapshot in the local HF cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(model, revision=revision, local_files_only=True)
    except Exception:
        return None
    return Path(local).resolve()


def require_path(reward: str, model: str, revision: str | None = None) -> Path:
    """``resolve_path`` or a RewardSetupError naming the reward and the model."""
    path = resolve_path(model, revision)
    if path is None:
        raise RewardSetupError(
            f"reward {reward!r}: model {model!r} not found: not a local directory, and not in the local "
            "Hugging Face cache (rewardq does not download models at run time)"
        )
    return path


def model_identity(model: str, revision: str | None = None) -> dict[str, str]:
    """Which weights ``model`` names: resolved path, revision and a hash of config + weight files."""
    path = resolve_path(model, revision)
    if path is None:
        return {"model": model, "revision": revision or ""}
    digest = hashlib.sha256()
    for name in _IDENTITY_FILES:
        file = path / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes())
    for file in sorted(path.iterdir()):
        if file.suffix in _WEIGHT_SUFFIXES:
            digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
    return {"model": str(path), "revision": revision or "", "weights": digest.hexdigest()[:16]}


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """``auto`` is bfloat16 on a GPU and float32 on the CPU; otherwise the named dtype."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, name)


def load_shared(
    resources: WorkerResources,
    loader: str,
    spec: ModelSpec,
    factory: Callable[[Path, Any, str], T],
    *,
    reward: str,
) -> T:
    """One ``factory(path, torch_dtype, device)`` result per process per (loader, path, revision, dtype,
    device), for the model ``spec`` (a reward's options) names. Errors become RewardSetupError naming
    the reward and the path (out of memory included)."""
    path = require_path(reward, spec.model, spec.revision)
    device = resources.device
    torch_dtype = resolve_dtype(spec.dtype, device)
    key = ("model", loader, str(path), spec.revision, str(torch_dtype), device)

    def build() -> T:
        try:
            return factory(path, torch_dtype, device)
        except RewardSetupError:
            raise
        except Exception as e:  # a missing head, a broken checkpoint, out of memory …
            raise RewardSetupError(
                f"reward {reward!r}: cannot load {loader} from {path}: {type(e).__name__}: {e}"
            ) from e

    return resources.shared(key, build)
