"""The PNG of ``rewardq audit diff --plot``: per reward, a scatter of a vs b and a histogram of b - a.

matplotlib (in the ``worker`` extra) is imported here only, with the file-only Agg backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rewardq.storage import RewardDiff


def plot_diffs(diffs: Sequence[RewardDiff], path: Path, *, label_a: str, label_b: str) -> None:
    """One row of two panels per reward, written as a PNG to ``path``."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("--plot needs matplotlib: pip install 'rewardq[worker]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(diffs), 2, figsize=(10, 4 * len(diffs)), squeeze=False)
    try:
        for (scatter, hist), diff in zip(axes, diffs, strict=True):
            scatter.scatter(diff.values_a, diff.values_b, s=6, alpha=0.4)
            lo = min([*diff.values_a, *diff.values_b], default=0.0)
            hi = max([*diff.values_a, *diff.values_b], default=1.0)
            scatter.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
            scatter.set_xlabel(f"{label_a} (a)")
            scatter.set_ylabel(f"{label_b} (b)")
            corr = "—" if diff.pearson is None else f"{diff.pearson:.3f}"
            scatter.set_title(f"{diff.reward}: {diff.both_ok} samples, Pearson {corr}")
            hist.hist([b - a for a, b in zip(diff.values_a, diff.values_b, strict=True)], bins=50)
            hist.set_xlabel("b - a")
            hist.set_ylabel("samples")
            hist.set_title(f"{diff.reward}: delta")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
