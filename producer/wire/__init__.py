"""The wire contract between producers and workers: the schema of a task and its result, the settings,
the error tree. It imports nothing else of rewardq."""
