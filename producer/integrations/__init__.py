"""Adapters that make rewardq a drop-in reward function for trainers: TRL (``trl``), ms-swift
(``swift``) and verl (``verl``). Each translates its trainer's calling convention into one submission
per batch; none imports its trainer at import time."""
