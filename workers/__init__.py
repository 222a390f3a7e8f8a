"""rewardq workers: the Celery app, the score task, reward kinds and the worker launcher.

Installed with ``pip install 'rewardq[worker]'``. Nothing here connects or loads a model at import.
"""
