"""Rule rewards: pure functions of a completion and its reference (ms-swift parity where it has one)."""
