"""``rewardq score``: rescore saved rollouts through the queue, streamed, resumable."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from rewardq.formats import FormatName
from rewardq.workers.cli.common import BrokerRetryNote, ConfigOpt, err, errors, process_started, settings
from rewardq.workers.cli.render import Format, render


@errors
def score(
    source: Annotated[
        Path,
        typer.Argument(
            help="Saved rollouts: .jsonl, .jsonl.gz or .parquet, or a directory of them "
            "(verl, ms-swift, TRL, plain)."
        ),
    ],
    reward: Annotated[
        list[str], typer.Option("--reward", "-r", help="NAME or NAME=WEIGHT; repeat for several.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write records with their rewards.")],
    run_id: Annotated[
        str, typer.Option("--run-id", help="Run id recorded in the audit; rerun with it to resume.")
    ],
    step: Annotated[
        int | None,
        typer.Option(help="Step recorded in the audit for every sample (default: each record's own step)."),
    ] = None,
    config: ConfigOpt = None,
    rollout_format: Annotated[
        str, typer.Option("--rollout-format", help="auto (detect), verl, swift, trl or plain.")
    ] = "auto",
    field: Annotated[
        list[str] | None,
        typer.Option("--field", help="TARGET=SOURCE, e.g. completion=output or solution=answer; repeatable."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait for each chunk (default REWARDQ_TIMEOUT).")
    ] = None,
    chunk_size: Annotated[
        int | None, typer.Option(min=1, help="Samples per task (default REWARDQ_CHUNK_SIZE).")
    ] = None,
    window: Annotated[int, typer.Option(help="Chunks in flight at once: bounds memory and queue.")] = 16,
    resume: Annotated[
        bool, typer.Option(help="Take scores this run already holds in the audit instead of resending.")
    ] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar with rate and ETA.")] = True,
    allow_scorer_change: Annotated[
        bool,
        typer.Option(
            "--allow-scorer-change",
            help="Score this run with the scorers the workers serve now even where its earlier batches "
            "had others (re-pins the run).",
        ),
    ] = False,
) -> None:
    """Score saved rollouts through the queue (or the embedded worker) and write them back with rewards.

    The file is checked whole before anything is enqueued, then streamed a chunk at a time at
    rescoring priority (training traffic goes first). Rerunning an interrupted run with the same
    --run-id sends only what the audit does not hold yet. With a broker, the workers score with their own
    rewards config: a --config whose scorer differs from what they serve is refused.
    """
    from rewardq.catalog import parse_reward_specs
    from rewardq.client import RewardClient
    from rewardq.formats import FORMAT_NAMES, parse_field_maps
    from rewardq.rescore import RescoreInterrupted, score_file

    started = process_started()  # REWARDQ_SERVE_WAIT counts from the command's start, imports included
    BrokerRetryNote.install()
    if rollout_format not in FORMAT_NAMES:
        raise typer.BadParameter(f"one of {', '.join(FORMAT_NAMES)}", param_hint="--rollout-format")
    weights = parse_reward_specs(reward)
    fields = parse_field_maps(field or [])
    opts = settings(rewards=config, chunk_size=chunk_size)
    stored = None
    with RewardClient(opts) as client:
        # what the workers (or the embedded worker) score with; the serving wait counts from the start
        served = client.scorers(list(weights), since=started)
        if config is not None and not opts.embedded:
            check_config(config, served)
        if resume:
            from rewardq.workers.cli.resume import AuditScores

            stored = AuditScores(opts, run_id, served)
        try:
            summary = score_file(
                client,
                source,
                out,
                weights,
                run_id=run_id,
                step=step,
                timeout=timeout,
                progress=progress,
                window=window,
                rollout_format=_format_name(rollout_format),
                fields=fields,
                stored=stored,
                allow_scorer_change=allow_scorer_change,
                started=started,
            )
        except RescoreInterrupted as e:
            err.print(str(e), highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(130) from e
        finally:
            if stored is not None:
                stored.close()
    render(summary.rows(), Format.table, title=f"{summary.samples} samples → {out}", console=err)


def _format_name(name: str) -> FormatName:
    from rewardq.formats import FORMAT_NAMES

    return next(n for n in FORMAT_NAMES if n == name)


def check_config(path: Path, served: Mapping[str, str | None]) -> None:
    """Refuse a client rewards config (``--config``) that would score a reward differently from what the
    live workers serve: they score with their own config, so it would only mislead the resume lookup."""
    from rewardq.wire.errors import ScorerMismatchError
    from rewardq.workers.rewards.config import RewardsConfig

    config = RewardsConfig.load(path)
    for name, fingerprint in served.items():
        local = config.build(name).fingerprint
        if fingerprint is not None and local != fingerprint:
            raise ScorerMismatchError(
                f"reward {name!r}: --config {path} gives scorer {local} but the live workers serve it with "
                f"{fingerprint}; nothing was enqueued: workers score with their own rewards config, so start "
                "workers with this config (under a new reward name) or leave --config out"
            )
