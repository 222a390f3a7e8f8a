"""Generative judges and reward models behind OpenAI-compatible servers (vLLM): clients, a per-process
event loop, request building, reply reading, the result cache and the concurrent dispatch of requests.

Used by the ``judge``, ``pairwise_judge``, ``group_judge`` and ``remote_reward_model`` reward kinds
(``local_judge``, a judge run in the worker, shares the templates and verdict parsing); nothing here runs
at import time.
"""
