"""The worker runtime: the Celery app, the score task, admission (deliveries, dead letters, consumer,
transport), the heartbeat, coalescing, time limits, the launcher and the embedded worker."""
