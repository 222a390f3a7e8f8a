"""rewardq: reward scoring for RL trainers, through a Redis queue, with a SQL audit trail.

This package is what a trainer imports (``pip install rewardq``): the wire schema, the client and
the reward catalog. It never imports the workers, the audit store, torch or SQLAlchemy.
"""

from rewardq.client import RewardClient
from rewardq.handles import DeadlinePolicy, ScoreHandle
from rewardq.results import ScoreResult, weighted_total
from rewardq.wire.errors import (
    ConfigError,
    DeadlineExceeded,
    EmbeddedUnavailable,
    InvalidInputError,
    Problem,
    RewardqError,
    SettingsError,
    UnknownBatchError,
    UnknownRewardError,
)
from rewardq.wire.schema import ChunkResult, Sample, ScoreTask, Status
from rewardq.wire.settings import Settings

__all__ = [
    "ChunkResult",
    "ConfigError",
    "DeadlineExceeded",
    "DeadlinePolicy",
    "EmbeddedUnavailable",
    "InvalidInputError",
    "Problem",
    "RewardClient",
    "RewardqError",
    "Sample",
    "ScoreHandle",
    "ScoreResult",
    "ScoreTask",
    "Settings",
    "SettingsError",
    "Status",
    "UnknownBatchError",
    "UnknownRewardError",
    "weighted_total",
]
