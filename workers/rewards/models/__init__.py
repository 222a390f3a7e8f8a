"""Reward kinds that hold a model (reward models, encoders) and their helpers: loading, chat tokens,
token-budget batching, generation."""
