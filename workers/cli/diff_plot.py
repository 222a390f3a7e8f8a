"""The PNGs of ``rewardq audit diff --plot OUT.png``: one per reward, ``OUT-<reward>.png``, since rewards
differ in shape (a binary reward next to a continuous one).

Each has two panels. Left: a reward with few distinct values (:data:`rewardq.storage.diff.FEW_VALUES`)
gets its transition counts, a grid of (a value, b value) with the number of samples in each cell; any
other reward a scatter of a against b. Right: how many samples moved by how much (b - a). The title
gives the correlations, or why they are missing.

matplotlib (in the ``worker`` extra) is imported here only, with the file-only Agg backend.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewardq.storage import RewardDiff
from rewardq.storage.diff import Transitions


def plot_paths(path: Path, rewards: Sequence[str]) -> list[Path]:
    """Where each reward's PNG goes: ``<stem>-<reward>.png`` beside ``path``."""
    return [path.with_name(f"{path.stem}-{reward}.png") for reward in rewards]


def plot_diffs(diffs: Sequence[RewardDiff], path: Path, *, label_a: str, label_b: str) -> list[Path]:
    """Write one PNG per reward (:func:`plot_paths`) and return their paths."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("--plot needs matplotlib: pip install 'rewardq[worker]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = plot_paths(path, [d.reward for d in diffs])
    for diff, out in zip(diffs, paths, strict=True):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
        try:
            transitions = diff.transitions()
            if transitions is None:
                _scatter(left, diff, label_a, label_b)
            else:
                _transitions(left, transitions, label_a, label_b)
            _deltas(right, diff, discrete=transitions is not None)
            fig.suptitle(_title(diff, label_a, label_b))
            fig.tight_layout()
            fig.savefig(out, format="png", dpi=100)
        finally:
            plt.close(fig)
    return paths


def _title(diff: RewardDiff, label_a: str, label_b: str) -> str:
    why = diff.why_no_correlation(label_a, label_b)
    if why is not None:
        corr = f"Pearson and Spearman undefined: {why}"
    else:
        corr = f"Pearson {diff.pearson:.3f}, Spearman {diff.spearman:.3f}"
    flips = "" if diff.flip_rate is None else f", flip rate {diff.flip_rate:.1%}"
    return f"{diff.reward}: {diff.both_ok} samples scored ok by both{flips}\n{corr}"


def _transitions(ax: Any, t: Transitions, label_a: str, label_b: str) -> None:
    """A grid with ``label_a``'s values across and ``label_b``'s up, the count written in each cell."""
    grid = [[t.counts[i][j] for i in range(len(t.values_a))] for j in range(len(t.values_b))]
    image = ax.imshow(grid, origin="lower", cmap="Blues", aspect="auto")
    peak = max(max(row) for row in grid) or 1
    for j, row in enumerate(grid):
        for i, count in enumerate(row):
            colour = "white" if count > peak / 2 else "black"
            ax.text(i, j, str(count), ha="center", va="center", color=colour, fontsize=11)
    ax.set_xticks(range(len(t.values_a)), [f"{v:g}" for v in t.values_a])
    ax.set_yticks(range(len(t.values_b)), [f"{v:g}" for v in t.values_b])
    ax.set_xlabel(f"run A value ({label_a})")
    ax.set_ylabel(f"run B value ({label_b})")
    ax.set_title("samples per (A value, B value)")
    ax.figure.colorbar(image, ax=ax, label="samples")


def _scatter(ax: Any, diff: RewardDiff, label_a: str, label_b: str) -> None:
    ax.scatter(diff.values_a, diff.values_b, s=6, alpha=0.4)
    lo = min([*diff.values_a, *diff.values_b], default=0.0)
    hi = max([*diff.values_a, *diff.values_b], default=1.0)
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
    ax.set_xlabel(f"run A value ({label_a})")
    ax.set_ylabel(f"run B value ({label_b})")
    ax.set_title("B against A, one dot per sample")


def _deltas(ax: Any, diff: RewardDiff, *, discrete: bool) -> None:
    deltas = [b - a for a, b in zip(diff.values_a, diff.values_b, strict=True)]
    if discrete:  # few values: a bar per delta, its count on it
        counts = sorted(Counter(deltas).items())
        labels = [f"{d:+g}" if d else "0" for d, _ in counts]
        bars = ax.bar(labels, [c for _, c in counts])
        ax.bar_label(bars)
    else:
        ax.hist(deltas, bins=50)
    ax.set_xlabel("B - A")
    ax.set_ylabel("samples")
    ax.set_title("change per sample")
