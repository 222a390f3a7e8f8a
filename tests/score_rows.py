"""Valid audit rows for tests that write the store directly: one builder, each test overriding the rest."""

from __future__ import annotations

import hashlib
from typing import Any


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def score_row(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid ``ok`` row for sample ``i`` of batch ``b1`` of run ``run-a``, with ``overrides``."""
    row: dict[str, Any] = {
        "run_id": "run-a",
        "step": 0,
        "batch_id": "b1",
        "sample_index": i,
        "sample_hash": sha256(f"sample {i}"),
        "sample_id": f"gsm8k-{i}",
        "reward": "accuracy",
        "scorer": "math@1:0123456789ab",
        "value": 1.0,
        "status": "ok",
        "error": None,
        "raw": None,
        "latency_ms": 12.5,
        "attempts": 1,
        "worker_host": "node-1",
        "worker_gpu": "0",
        "prompt_text": None,
        "completion_text": None,
        "truncated": None,
        "cache_hit": None,
        "http_attempts": None,
        "replica": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "template_hash": None,
        "group_key": None,
        "step_scores": None,
        "step_ends": None,
    }
    return row | overrides
