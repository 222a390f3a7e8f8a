"""The ``rewardq`` command line: demo, worker, score, rewards, audit, db.

Settings come from REWARDQ_* variables, read once here and passed down; flags override them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from rewardq.errors import RewardqError
from rewardq.schema import queue_for
from rewardq.settings import Settings
from rewardq.workers.render import Format, render

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="rewardq: reward scoring for RL trainers, through a queue, with an audit trail.",
)
audit_app = typer.Typer(no_args_is_help=True, help="Query the reward audit history.")
db_app = typer.Typer(no_args_is_help=True, help="Manage the audit database.")
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")

err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Rewards config (TOML); default REWARDQ_REWARDS.")
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


def _errors(fn: F) -> F:
    """Turn rewardq errors into a one-paragraph message and exit code 2, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RewardqError as e:
            # The message is escaped: "[rewards.rm]" in it is text, not rich markup.
            err.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False, markup=True)
            raise typer.Exit(2) from e

    return wrapper  # type: ignore[return-value]


@app.callback()
def _main(
    log_level: Annotated[str, typer.Option(help="Logging level.", envvar="REWARDQ_LOG_LEVEL")] = "WARNING",
) -> None:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _settings(**overrides: Any) -> Settings:
    return Settings.from_env(**overrides)


@app.command()
@_errors
def demo(
    config: ConfigOpt = None,
    run_id: Annotated[str | None, typer.Option(help="Run id to record; default demo-<time>.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the scored records here.")
    ] = None,
) -> None:
    """Score the bundled example rollouts (embedded worker unless a broker is set) and show the results."""
    from rewardq.workers.demo import run_demo

    settings = _settings(rewards=config)
    run_demo(settings, run_id or f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}", out)


@app.command()
@_errors
def worker(
    rewards: Annotated[
        str, typer.Option("--rewards", "-r", help="Comma-separated rewards whose queues to consume.")
    ],
    gpu: Annotated[
        str | None, typer.Option(help="Pin this GPU (CUDA_VISIBLE_DEVICES) before torch loads.")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Worker processes/threads (default: CPU count).")
    ] = None,
    pool: Annotated[
        str | None, typer.Option(help="prefork (default), solo (default with --gpu) or threads.")
    ] = None,
    config: ConfigOpt = None,
    loglevel: Annotated[str, typer.Option(help="Celery worker log level.")] = "INFO",
) -> None:
    """Run a Celery worker consuming rewards.<name> for each of --rewards."""
    from rewardq.workers.launcher import WorkerOptions, run_worker

    names = [r.strip() for r in rewards.split(",") if r.strip()]
    if not names:
        raise typer.BadParameter("name at least one reward", param_hint="--rewards")
    code = run_worker(_settings(rewards=config), WorkerOptions(names, gpu, concurrency, pool, loglevel))
    raise typer.Exit(code)


@app.command()
@_errors
def score(
    source: Annotated[Path, typer.Argument(help="Saved rollouts: .jsonl or .parquet.")],
    reward: Annotated[
        list[str], typer.Option("--reward", "-r", help="NAME or NAME=WEIGHT; repeat for several.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write records with their rewards.")],
    run_id: Annotated[str, typer.Option("--run-id", help="Run id recorded in the audit.")],
    step: Annotated[int | None, typer.Option(help="Step recorded in the audit.")] = None,
    config: ConfigOpt = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait (default REWARDQ_TIMEOUT).")] = None,
    chunk_size: Annotated[
        int | None, typer.Option(help="Samples per task (default REWARDQ_CHUNK_SIZE).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Score saved rollouts through the queue (or the embedded worker) and write them back with rewards."""
    from rewardq.catalog import parse_reward_specs
    from rewardq.client import RewardClient
    from rewardq.rescore import score_file
    from rewardq.workers.demo import summary_rows

    weights = parse_reward_specs(reward)
    settings = _settings(rewards=config, chunk_size=chunk_size)
    with RewardClient(settings) as client:
        result = score_file(
            client, source, out, weights, run_id=run_id, step=step, timeout=timeout, progress=progress
        )
    render(summary_rows(result), Format.table, title=f"{len(result)} samples → {out}", console=err)


@app.command("rewards")
@_errors
def rewards_(config: ConfigOpt = None) -> None:
    """List the reward kinds and the configured rewards with their options."""
    from rewardq.workers.config import RewardsConfig

    loaded = RewardsConfig.load(_settings(rewards=config).rewards)
    render(
        [
            {"kind": k, "class": f"{c.__module__}:{c.__qualname__}"}
            for k in loaded.kinds.names()
            for c in [loaded.kinds.resolve(k)]
        ],
        Format.table,
        title="reward kinds",
    )
    render(
        [
            {
                "reward": s.name,
                "kind": s.kind,
                "queue": queue_for(s.name),
                "options": s.options.model_dump(mode="json"),
            }
            for s in (loaded.specs[n] for n in loaded.names)
        ],
        Format.table,
        title=f"rewards ({loaded.path or 'built in'})",
    )


@db_app.command("upgrade")
@_errors
def db_upgrade(revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Apply the audit store's migrations (REWARDQ_DATABASE_URL: SQLite or PostgreSQL)."""
    from rewardq.storage import current, upgrade

    url = _settings().database_url
    upgrade(url, revision)
    err.print(f"audit store at revision {current(url)}: {_safe_url(url)}")


@db_app.command("current")
@_errors
def db_current() -> None:
    """Print the audit store's applied migration revision."""
    from rewardq.storage import current

    print(current(_settings().database_url) or "none")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _connect() -> Any:
    from rewardq.storage import make_engine

    return make_engine(_settings().database_url).connect()


@audit_app.command("runs")
@_errors
def audit_runs(fmt: FormatOpt = Format.table) -> None:
    """The runs in the audit store, with their steps, rewards and score counts."""
    from rewardq.storage import list_runs

    with _connect() as conn:
        render([_row(r) for r in list_runs(conn)], fmt, title="runs")


@audit_app.command("scores")
@_errors
def audit_scores(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    step_min: Annotated[int | None, typer.Option(help="First step.")] = None,
    step_max: Annotated[int | None, typer.Option(help="Last step.")] = None,
    reward: Annotated[list[str] | None, typer.Option("--reward", "-r", help="Only these rewards.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """The scores of a run, filtered by step range and reward."""
    from rewardq.storage import run_scores

    with _connect() as conn:
        rows = run_scores(
            conn, run_id, step_min=step_min, step_max=step_max, rewards=reward or None, limit=limit
        )
        render([_row(r) for r in rows], fmt, title=f"scores of {run_id}")


@audit_app.command("stats")
@_errors
def audit_stats(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    reward: Annotated[list[str] | None, typer.Option("--reward", "-r", help="Only these rewards.")] = None,
    step_min: Annotated[int | None, typer.Option(help="First step.")] = None,
    step_max: Annotated[int | None, typer.Option(help="Last step.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Per step and reward: mean, std and count of ok values, and counts per status."""
    from rewardq.storage import step_stats

    with _connect() as conn:
        rows = step_stats(conn, run_id, rewards=reward or None, step_min=step_min, step_max=step_max)
        render([_row(r) for r in rows], fmt, title=f"stats of {run_id}")


@audit_app.command("sample")
@_errors
def audit_sample(
    sample_hash: Annotated[str | None, typer.Option("--hash", help="The sample's content hash.")] = None,
    sample_id: Annotated[str | None, typer.Option("--id", help="The sample's id column.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Every score a sample ever got, across runs and rescorings."""
    from rewardq.storage import sample_history

    if (sample_hash is None) == (sample_id is None):
        raise typer.BadParameter("give exactly one of --hash or --id")
    with _connect() as conn:
        rows = sample_history(conn, sample_hash=sample_hash, sample_id=sample_id)
        render([_row(r) for r in rows], fmt, title=f"history of {sample_hash or sample_id}")


@audit_app.command("verify")
@_errors
def audit_verify(run_id: Annotated[str, typer.Argument(help="Run id.")]) -> None:
    """Check a run's hash chain: says which rows were edited, deleted, inserted or reordered (exit 1)."""
    from rewardq.storage import verify_run

    with _connect() as conn:
        report = verify_run(conn, run_id, _settings().chain_key)
    if report.rows == 0:
        raise typer.BadParameter(f"no scores of run {run_id!r} in the audit store", param_hint="RUN")
    if report.intact:
        print(
            f"run {run_id}: {report.rows} rows, chain intact (head seq {report.head_seq}, {report.head_hash})"
        )
        return
    for problem in report.problems:
        err.print(f"{run_id}: {escape(problem)}", highlight=False)
    err.print(f"run {run_id}: {len(report.problems)} problem(s) in {report.rows} rows", highlight=False)
    raise typer.Exit(1)


def _row(record: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    return dict(record)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
