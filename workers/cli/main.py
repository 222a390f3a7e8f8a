"""The ``rewardq`` command line: the app and its small commands (demo, worker, rewards, db); ``score``
(rewardq.workers.cli.score), ``status`` (rewardq.workers.cli.status), ``serve`` and ``gateway-key``
(rewardq.workers.cli.serve), ``audit``
(rewardq.workers.cli.audit) and ``dlq`` (rewardq.workers.cli.dlq) live in modules of their own.

Settings come from REWARDQ_* variables, read once here and passed down; flags override them.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from rewardq.connection import masked
from rewardq.wire.schema import queue_for
from rewardq.workers.cli.audit import audit_app
from rewardq.workers.cli.common import ConfigOpt, err, errors, settings
from rewardq.workers.cli.dlq import dlq_app
from rewardq.workers.cli.failures import DEBUG_ENV
from rewardq.workers.cli.render import Format, render
from rewardq.workers.cli.score import score
from rewardq.workers.cli.serve import gateway_key, serve
from rewardq.workers.cli.status import status

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="rewardq: reward scoring for RL trainers, through a queue, with an audit trail.",
)
db_app = typer.Typer(no_args_is_help=True, help="Manage the audit database.")
app.command()(score)
app.command()(status)
app.command()(serve)
app.command("gateway-key")(gateway_key)
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")
app.add_typer(dlq_app, name="dlq")


@app.callback()
def _main(
    log_level: Annotated[str, typer.Option(help="Logging level.", envvar="REWARDQ_LOG_LEVEL")] = "WARNING",
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of failures (also REWARDQ_DEBUG=1).")
    ] = False,
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"  # the command line's own flag, read when a command fails
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
@errors
def demo(
    config: ConfigOpt = None,
    run_id: Annotated[str | None, typer.Option(help="Run id to record; default demo-<time>.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the scored records here.")
    ] = None,
) -> None:
    """Score the bundled example rollouts (embedded worker unless a broker is set) and show the results."""
    from rewardq.workers.cli.demo import run_demo

    run_demo(settings(rewards=config), run_id or f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}", out)


@app.command()
@errors
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
    from rewardq.workers.runtime.launcher import WorkerOptions, run_worker

    names = [r.strip() for r in rewards.split(",") if r.strip()]
    if not names:
        raise typer.BadParameter("name at least one reward", param_hint="--rewards")
    code = run_worker(settings(rewards=config), WorkerOptions(names, gpu, concurrency, pool, loglevel))
    raise typer.Exit(code)


@app.command("rewards")
@errors
def rewards_(config: ConfigOpt = None) -> None:
    """List the reward kinds and the configured rewards with their options."""
    from rewardq.workers.cli.secrets import masked_options
    from rewardq.workers.rewards.config import RewardsConfig

    loaded = RewardsConfig.load(settings(rewards=config).rewards)
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
                "options": masked_options(s.options.model_dump(mode="json")),
            }
            for s in (loaded.specs[n] for n in loaded.names)
        ],
        Format.table,
        title=f"rewards ({loaded.path or 'built in'})",
    )


@db_app.command("upgrade")
@errors
def db_upgrade(revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Apply the audit store's migrations (REWARDQ_DATABASE_URL: SQLite or PostgreSQL)."""
    from rewardq.storage import current, upgrade

    url = settings().database_url
    upgrade(url, revision)
    err.print(f"audit store at revision {current(url)}: {masked(url)}")


@db_app.command("current")
@errors
def db_current() -> None:
    """Print the audit store's applied migration revision."""
    from rewardq.storage import current

    print(current(settings().database_url) or "none")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
