"""``rewardq audit``: the audit history — runs, scores, statistics, one sample's history, two runs' diff,
a run's reward health, and the hash chain: verify a run, seal what workers have not sealed yet."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape

from rewardq.workers.cli.common import FormatOpt, as_row, err, errors, settings
from rewardq.workers.cli.render import Format, render

audit_app = typer.Typer(no_args_is_help=True, help="Query the reward audit history.")

RewardsOpt = Annotated[list[str] | None, typer.Option("--reward", "-r", help="Only these rewards.")]


def _connect() -> Any:
    from rewardq.storage import make_engine

    return make_engine(settings().database_url).connect()


@audit_app.command("runs")
@errors
def audit_runs(fmt: FormatOpt = Format.table) -> None:
    """The runs in the audit store, with their steps, rewards and score counts; ``mixed_scorers`` names
    a run's rewards whose scores come from more than one scorer fingerprint."""
    from rewardq.storage import list_runs

    with _connect() as conn:
        runs = list_runs(conn)
    render([as_row(r) for r in runs], fmt, title="runs")
    mixed = [r for r in runs if r.mixed_scorers]
    if mixed and fmt is Format.table:
        err.print(
            f"{len(mixed)} run(s) scored with more than one scorer for a reward (mixed_scorers): their "
            "scores of that reward are not comparable; `rewardq audit scores RUN` shows each row's scorer",
            highlight=False,
        )


@audit_app.command("scores")
@errors
def audit_scores(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    step_min: Annotated[int | None, typer.Option(help="First step.")] = None,
    step_max: Annotated[int | None, typer.Option(help="Last step.")] = None,
    reward: RewardsOpt = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """The scores of a run, filtered by step range and reward."""
    from rewardq.storage import run_scores

    with _connect() as conn:
        rows = run_scores(
            conn, run_id, step_min=step_min, step_max=step_max, rewards=reward or None, limit=limit
        )
        render([as_row(r) for r in rows], fmt, title=f"scores of {run_id}")


@audit_app.command("stats")
@errors
def audit_stats(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    reward: RewardsOpt = None,
    step_min: Annotated[int | None, typer.Option(help="First step.")] = None,
    step_max: Annotated[int | None, typer.Option(help="Last step.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Per step and reward: mean, std and count of ok values, and counts per status."""
    from rewardq.storage import step_stats

    with _connect() as conn:
        rows = step_stats(conn, run_id, rewards=reward or None, step_min=step_min, step_max=step_max)
        render([as_row(r) for r in rows], fmt, title=f"stats of {run_id}")


@audit_app.command("sample")
@errors
def audit_sample(
    sample_hash: Annotated[str | None, typer.Option("--hash", help="The sample's content hash.")] = None,
    sample_id: Annotated[str | None, typer.Option("--id", help="The sample's id column.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Every score a sample ever got, across runs and rescorings (with its group and its steps)."""
    from rewardq.storage import sample_history

    if (sample_hash is None) == (sample_id is None):
        raise typer.BadParameter("give exactly one of --hash or --id")
    with _connect() as conn:
        rows = sample_history(conn, sample_hash=sample_hash, sample_id=sample_id)
        render(
            [_steps_as_lists(as_row(r)) for r in rows], fmt, title=f"history of {sample_hash or sample_id}"
        )


_UNSEALED_SHOWN = 20


@audit_app.command("verify")
@errors
def audit_verify(run_id: Annotated[str, typer.Argument(help="Run id.")]) -> None:
    """Check a run's hash chain: says which rows were edited, deleted, inserted or reordered (exit 1),
    or that REWARDQ_AUDIT_KEY is not the key the run was sealed with (exit 2); and which rows are not
    sealed yet (not a problem: workers seal rows soon after they commit)."""
    from rewardq.storage import verify_run

    with _connect() as conn:
        report = verify_run(conn, run_id, settings().chain_key)
    if report.rows == 0:
        raise typer.BadParameter(f"no scores of run {run_id!r} in the audit store", param_hint="RUN")
    if report.wrong_key is not None:
        message = f"run {run_id}: REWARDQ_AUDIT_KEY: {report.wrong_key}; no row was checked"
        err.print(escape(message), highlight=False)
        raise typer.Exit(2)
    _print_unsealed(run_id, report.unsealed)
    if report.intact:
        print(f"run {run_id}: {report.rows} rows, {_chain_state(report)}")
        return
    for problem in report.problems:
        err.print(f"{run_id}: {escape(problem)}", highlight=False)
    err.print(f"run {run_id}: {len(report.problems)} problem(s) in {report.rows} rows", highlight=False)
    raise typer.Exit(1)


def _chain_state(report: Any) -> str:
    """An intact chain in words, with how many rows are not sealed yet."""
    intact = f"chain intact (head seq {report.head_seq}, {report.head_hash})"
    waiting = len(report.unsealed)
    if not waiting:
        return intact
    if waiting == report.rows:
        return "none sealed yet"
    return f"{report.rows - waiting} sealed, {intact}; {waiting} not sealed yet"


def _print_unsealed(run_id: str, unsealed: list[str]) -> None:
    for row in unsealed[:_UNSEALED_SHOWN]:
        err.print(f"{run_id}: {escape(row)} is not sealed yet", highlight=False)
    if len(unsealed) > _UNSEALED_SHOWN:
        err.print(
            f"{run_id}: … and {len(unsealed) - _UNSEALED_SHOWN} more rows not sealed yet", highlight=False
        )


@audit_app.command("seal")
@errors
def audit_seal(
    run_id: Annotated[
        str | None, typer.Argument(help="Run id (default: every run with unsealed rows).")
    ] = None,
) -> None:
    """Seal the rows not sealed yet into their run's hash chain, with REWARDQ_AUDIT_KEY. Workers do this
    themselves soon after each write; this is for rows a stopped worker left. Safe beside workers."""
    from rewardq.storage import make_engine
    from rewardq.storage.seal import seal_run, unsealed_runs

    engine = make_engine(settings().database_url)
    try:
        if run_id is None:
            with engine.connect() as conn:
                runs = unsealed_runs(conn)
        else:
            runs = [run_id]
        for run in runs:
            sealed = seal_run(engine, run, settings().chain_key)
            if sealed is None:
                print(f"run {run}: another sealer is sealing it")
            else:
                print(f"run {run}: {sealed} rows sealed")
    finally:
        engine.dispose()


@audit_app.command("diff")
@errors
def audit_diff(
    run_a: Annotated[str, typer.Argument(help="Run id of side a.")],
    run_b: Annotated[str, typer.Argument(help="Run id of side b (may equal a with --scorer-a/-b).")],
    reward: RewardsOpt = None,
    scorer_a: Annotated[
        str | None, typer.Option(help="Only side-a scores whose scorer fingerprint starts with this.")
    ] = None,
    scorer_b: Annotated[
        str | None, typer.Option(help="Only side-b scores whose scorer fingerprint starts with this.")
    ] = None,
    top: Annotated[int, typer.Option(help="How many of the largest disagreements to list.")] = 10,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write a PNG per reward, PLOT-<reward>.png: transition counts (few values) or a scatter "
            "of a vs b, and the deltas."
        ),
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """The same samples (by content hash) under two runs or two scorer versions: flip rate, mean delta,
    Pearson and Spearman correlation, the largest disagreements."""
    from rewardq.storage import diff_scores, paired_scores

    if run_a == run_b and (scorer_a or "") == (scorer_b or ""):
        raise typer.BadParameter("comparing a run with itself needs different --scorer-a and --scorer-b")
    with _connect() as conn:
        pairs = paired_scores(
            conn, run_a, run_b, rewards=reward or None, scorer_a=scorer_a, scorer_b=scorer_b
        )
        diffs = diff_scores(pairs, top=top)
    if not diffs:
        err.print(f"no sample was scored for the same reward in both {run_a!r} and {run_b!r}")
        raise typer.Exit(1)
    title = f"{run_a} (a) vs {run_b} (b)"
    if fmt is Format.table:
        render([d.summary() for d in diffs], fmt, title=title)
        largest = [as_row(x) for d in diffs for x in d.largest]
        if largest:
            render(largest, fmt, title="largest disagreements (delta = b - a)")
    else:  # one row per reward, its largest disagreements inside
        render([{**d.summary(), "largest": [as_row(x) for x in d.largest]} for d in diffs], fmt)
    if plot is not None:
        from rewardq.workers.cli.diff_plot import plot_diffs

        for written in plot_diffs(diffs, plot, label_a=run_a, label_b=run_b):
            err.print(f"plot written to {escape(str(written))}", highlight=False)


def _steps_as_lists(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its step scores and ends as the lists the audit keeps as JSON text."""
    for column in ("step_scores", "step_ends"):
        if row.get(column) is not None:
            row[column] = orjson.loads(row[column])
    return row


@audit_app.command("health")
@errors
def audit_health(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    reward: RewardsOpt = None,
    step_min: Annotated[int | None, typer.Option(help="First step.")] = None,
    step_max: Annotated[int | None, typer.Option(help="Last step.")] = None,
    pair: Annotated[
        str | None, typer.Option(help="Agreement of these two rewards only, 'a,b' (default: every pair).")
    ] = None,
    window: Annotated[
        int | None,
        typer.Option(min=1, help="Test drift against the N steps before each step (default: all earlier)."),
    ] = None,
    drift_p: Annotated[
        float | None, typer.Option(help="Flag drift when the KS test's p is below this [default: 0.001].")
    ] = None,
    drift_min: Annotated[
        int | None,
        typer.Option(min=2, help="Test drift only with this many ok values on each side [default: 20]."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead of tables.")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write a PNG: per-step curves per reward, length correlation, agreement, statuses."
        ),
    ] = None,
) -> None:
    """Per step and reward: counts per status, mean/std/p10/p90, Spearman of reward with completion length,
    a drift flag (two-sample Kolmogorov-Smirnov against earlier steps); per step, Spearman agreement of each
    pair of rewards."""
    from rewardq.storage import DriftTest, run_exists, run_health

    pairs = None if pair is None else [_pair(pair)]
    test = DriftTest(window=window)
    if drift_p is not None:
        test = dataclasses.replace(test, p_below=drift_p)
    if drift_min is not None:
        test = dataclasses.replace(test, min_count=drift_min)
    with _connect() as conn:
        if not run_exists(conn, run_id):
            err.print(f"no scores of run {escape(repr(run_id))} in the audit store", highlight=False)
            raise typer.Exit(1)
        health = run_health(
            conn, run_id, rewards=reward or None, step_min=step_min, step_max=step_max, pairs=pairs, test=test
        )
    if not health.steps:
        err.print(
            f"no scores of run {escape(repr(run_id))} match --reward/--step-min/--step-max", highlight=False
        )
        raise typer.Exit(1)
    missing = sorted({r for p in pairs or [] for r in p} - set(health.rewards))
    if missing:
        raise typer.BadParameter(f"run {run_id!r} has no scores of {', '.join(missing)}", param_hint="--pair")
    if plot is not None:  # before the tables: a reader that stops early (`| head`) still gets the plot
        from rewardq.workers.cli.health_plot import plot_health

        plot_health(health, plot)
        err.print(f"plot written to {escape(str(plot))}", highlight=False)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(health.as_json(), option=orjson.OPT_APPEND_NEWLINE))
    else:
        _health_tables(health)


def _pair(text: str) -> tuple[str, str]:
    names = [n.strip() for n in text.split(",")]
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise typer.BadParameter(
            f"expected two different reward names 'a,b', got {text!r}", param_hint="--pair"
        )
    return names[0], names[1]


def _health_tables(health: Any) -> None:
    unit = health.length_unit
    render([s.row() for s in health.steps], Format.table, title=f"health of {health.run_id}")
    agreements = [as_row(a) for a in health.agreements]
    if agreements:
        render(agreements, Format.table, title="agreement: Spearman of two rewards on the same samples")
    test = health.test
    err.print(
        f"len spearman: Spearman of value with completion length in {unit}"
        if unit
        else f"len spearman: {health.length_note}",
        highlight=False,
        soft_wrap=True,
    )
    err.print(
        f"drift: {test.name} test of each step's ok values against {test.reference}, DRIFT when "
        f"p < {test.p_below:g} with at least {test.min_count} values on each side",
        highlight=False,
        soft_wrap=True,
    )
