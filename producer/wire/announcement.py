"""A worker's announcement: what it tells producers and ``rewardq status`` about itself, every heartbeat.

The worker writes it as JSON under ``rewardq:worker:<node>`` (rewardq.wire.keys) and producers read it
back through the same model. Workers and producers of other versions share a broker, so reading is
lenient: unknown fields are ignored and every field but ``node`` may be missing (an old worker announced
no fingerprints: each then counts as unknown in :mod:`rewardq.scorers`). An announcement that
is not JSON or does not fit the model is unreadable, and readers skip it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Announcement(BaseModel):
    """One worker: what it serves (rewards, their queues and scorer fingerprints) and where."""

    model_config = ConfigDict(extra="ignore")

    node: str
    rewards: list[str] = Field(default_factory=list)
    queues: list[str] = Field(default_factory=list)
    gpu: str | None = None
    pool: str | None = None
    concurrency: int | None = None
    fingerprints: dict[str, str | None] = Field(default_factory=dict)  # reward -> scorer fingerprint
    host: str | None = None
    pid: int | None = None
    started_at: float | None = None
    # Written at each beat: when (the worker's clock) and how many tasks the worker holds.
    beat_at: float | None = None
    held: int = 0
    # True on the claim a worker writes before it consumes (rewardq.workers.runtime.heartbeat);
    # producers do not count it as serving until its first beat, which drops the field.
    starting: bool = False

    def to_json(self) -> str:
        """The JSON a worker writes; ``starting`` appears only on a claim, as it always has."""
        return self.model_dump_json(exclude=None if self.starting else {"starting"})

    @classmethod
    def read(cls, raw: bytes | str) -> Announcement | None:
        """The announcement in ``raw``, or None when it is unreadable."""
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            return None
