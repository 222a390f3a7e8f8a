"""The wire contract between producers and workers, each fact stated once: the schema of a task and its
result with their length limits (schema), the Redis keys both sides use (keys), a worker's heartbeat
announcement (announcement), the settings, the error tree. It imports nothing else of rewardq."""
