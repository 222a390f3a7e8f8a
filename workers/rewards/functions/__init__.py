"""How each trainer calls its reward functions, so that the ``function`` reward kind can call them alike.

A convention (``trl``, ``swift``, ``verl``) turns a chunk of samples into the calls its trainer would
make (:class:`~rewardq.workers.rewards.functions.convention.Call`) and reads what the function returned
back into
scores. Invoking the function (sync or async) and isolating failures is the reward kind's job.
"""

from __future__ import annotations

from rewardq.workers.rewards.functions.convention import Call, Convention
from rewardq.workers.rewards.functions.swift import SwiftConvention
from rewardq.workers.rewards.functions.trl import TrlConvention
from rewardq.workers.rewards.functions.verl import VerlConvention

CONVENTIONS: dict[str, type[Convention]] = {
    "trl": TrlConvention,
    "swift": SwiftConvention,
    "verl": VerlConvention,
}

__all__ = ["CONVENTIONS", "Call", "Convention"]
