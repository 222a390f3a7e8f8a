"""The HTTP gateway (``rewardq serve``): a FastAPI app that produces through one :class:`RewardClient`.

Needs the ``gateway`` extra (FastAPI, uvicorn); nothing else of rewardq imports this package.
"""
