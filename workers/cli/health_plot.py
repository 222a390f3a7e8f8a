"""The PNG of ``rewardq audit health RUN --plot OUT.png``: one column of panels sharing the step axis.

- one panel per reward (rewards differ in scale): the mean per step, a band from the 10th to the 90th
  percentile, and a red triangle on each step the drift test flags;
- the length correlation per step, one line per reward (Spearman, -1 to 1; near +1 is length hacking);
- the agreement per step, one line per pair of rewards (left out when the run has one reward);
- the share of scores that are not ``ok`` per step, by reward (colour) and status (line style).

A reward keeps its colour in every panel. Scores without a step are not plotted. matplotlib (in the
``worker`` extra) is imported here only, with the file-only Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardq.storage.health import RunHealth

_STYLES = {"unscorable": ":", "error": "-", "timeout": "--"}
_BOX = {"facecolor": "white", "edgecolor": "grey"}  # a note written over a panel's lines


def plot_health(health: RunHealth, path: Path) -> None:
    """Write the run's health to ``path`` (PNG)."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("--plot needs matplotlib: pip install 'rewardq[worker]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rewards = health.rewards
    colours = {r: f"C{i % 10}" for i, r in enumerate(rewards)}
    pairs = sorted({(a.reward_a, a.reward_b) for a in health.agreements})
    panels = len(rewards) + 2 + (1 if pairs else 0)
    fig, grid = plt.subplots(panels, 1, figsize=(12, 2.3 * panels + 0.6), sharex=True, squeeze=False)
    axes = [row[0] for row in grid]
    try:
        for ax, reward in zip(axes, rewards, strict=False):
            _values(ax, health, reward, colours[reward])
        rest = axes[len(rewards) :]
        _length(rest[0], health, colours)
        if pairs:
            _agreement(rest[1], health, pairs, first_colour=len(rewards))
        _statuses(rest[-1], health, colours)
        rest[-1].set_xlabel("step")
        test = health.test
        unplotted = sum(s.count for s in health.steps if s.step is None)
        note = f"; {unplotted} scores without a step are not plotted" if unplotted else ""
        fig.suptitle(
            f"reward health of run {health.run_id}{note}\n▼ drift: {test.name} test against "
            f"{test.reference}, p < {test.p_below:g}, at least {test.min_count} values a side",
            fontsize=10,
        )
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)


def _steps(health: RunHealth, reward: str) -> list[Any]:
    return [s for s in health.steps if s.reward == reward and s.step is not None]


def _values(ax: Any, health: RunHealth, reward: str, colour: str) -> None:
    rows = [s for s in _steps(health, reward) if s.mean is not None]
    steps = [s.step for s in rows]
    ax.fill_between(
        steps, [s.p10 for s in rows], [s.p90 for s in rows], color=colour, alpha=0.2, label="p10-p90"
    )
    ax.plot(steps, [s.mean for s in rows], color=colour, marker=".", label="mean")
    flagged = [s for s in rows if s.drift is not None and s.drift.flagged]
    if flagged:
        ax.scatter(
            [s.step for s in flagged],
            [s.mean for s in flagged],
            marker="v",
            s=80,
            color="red",
            zorder=3,
            label=f"drift ({len(flagged)} steps)",
        )
    ax.set_ylabel(f"{reward}\nvalue")
    ax.set_title(f"{reward}: mean of ok values per step, band p10-p90", fontsize=9, loc="left")
    _legend(ax)
    ax.grid(alpha=0.3)


def _length(ax: Any, health: RunHealth, colours: dict[str, str]) -> None:
    if health.length_unit is None:
        ax.text(
            0.5,
            0.5,
            "no completion length in the audit\n(store_text off, no token counts)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            bbox=_BOX,
        )
    for reward, colour in colours.items():
        rows = [s for s in _steps(health, reward) if s.length_spearman is not None]
        if rows:
            ax.plot(
                [s.step for s in rows],
                [s.length_spearman for s in rows],
                color=colour,
                marker=".",
                label=reward,
            )
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Spearman rho")
    unit = f" ({health.length_unit})" if health.length_unit else ""
    ax.set_title(
        f"reward vs completion length{unit}; near +1: longer scores higher (length hacking)",
        fontsize=9,
        loc="left",
    )
    _legend(ax)


def _agreement(ax: Any, health: RunHealth, pairs: list[tuple[str, str]], *, first_colour: int) -> None:
    """One line per pair, in colours after the rewards' (a pair is not either of its rewards)."""
    for i, (a, b) in enumerate(pairs):
        rows = [x for x in health.agreements if (x.reward_a, x.reward_b) == (a, b) and x.step is not None]
        rows = [x for x in rows if x.spearman is not None]
        ax.plot(
            [x.step for x in rows],
            [x.spearman for x in rows],
            color=f"C{(first_colour + i) % 10}",
            linestyle="-.",
            marker=".",
            label=f"{a} vs {b}",
        )
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Spearman rho")
    ax.set_title(
        "agreement of two rewards on the same samples (1: same ranking, 0: unrelated)", fontsize=9, loc="left"
    )
    _legend(ax)


def _statuses(ax: Any, health: RunHealth, colours: dict[str, str]) -> None:
    for reward, colour in colours.items():
        rows = [s for s in _steps(health, reward) if s.count]
        for status, style in _STYLES.items():
            rates = [s.statuses.get(status, 0) / s.count for s in rows]
            if any(rates):
                ax.plot(
                    [s.step for s in rows],
                    rates,
                    color=colour,
                    linestyle=style,
                    marker=".",
                    label=f"{reward}: {status}",
                )
    ax.set_ylim(bottom=0)
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))  # decimals as the ticks need (0.5 %, not 0 %)
    ax.set_ylabel("share of scores")
    ax.set_title(
        "scores not ok per step (line style: unscorable ··· error — timeout - -)", fontsize=9, loc="left"
    )
    if not ax.get_lines():
        ax.text(0.5, 0.5, "every score ok", ha="center", va="center", transform=ax.transAxes, bbox=_BOX)
        ax.set_ylim(0, 1)
    _legend(ax)


def _legend(ax: Any) -> None:
    """Beside the panel, never over a curve."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
