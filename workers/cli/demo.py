"""``rewardq demo``: score the bundled example rollouts and show what came back."""

from __future__ import annotations

import statistics
from importlib import resources
from pathlib import Path
from typing import Any

from rewardq.client import RewardClient
from rewardq.results import ScoreResult
from rewardq.rollouts import read_records, write_records
from rewardq.wire.schema import STATUSES
from rewardq.wire.settings import Settings
from rewardq.workers.cli.render import Format, render, stdout_console

DEMO_WEIGHTS = {"accuracy": 1.0, "format": 0.5, "repetition": 0.0}  # repetition: logged, not counted


def demo_rollouts() -> Path:
    return Path(str(resources.files("rewardq.workers") / "data" / "demo_rollouts.jsonl"))


def summary_rows(result: ScoreResult) -> list[dict[str, Any]]:
    """Per reward: weight, mean and count of ok values, and how many samples got each status."""
    rows = []
    counts_by_reward = result.status_counts()
    for name, weight in result.weights.items():
        ok = [
            v
            for v, s in zip(result.rewards[name], result.statuses[name], strict=True)
            if s == "ok" and v is not None
        ]
        counts = counts_by_reward[name]
        row: dict[str, Any] = {
            "reward": name,
            "weight": weight,
            "mean": statistics.fmean(ok) if ok else None,
            **{status: counts.get(status, 0) for status in STATUSES},
        }
        rows.append(row)
    return rows


def run_demo(settings: Settings, run_id: str, out: Path | None) -> ScoreResult:
    console = stdout_console()
    source = demo_rollouts()
    mode = "embedded worker (no broker set)" if settings.embedded else f"broker {settings.broker_url}"
    console.print(f"[bold]rewardq demo[/bold]: scoring {source.name} via the {mode}")
    records = read_records(source, max_record_bytes=settings.max_record_bytes)
    with RewardClient(settings) as client:
        result = client.score([r.data for r in records], DEMO_WEIGHTS, run_id=run_id, step=0)
    if out is not None:
        write_records(out, ({**r.data, **result.record(i)} for i, r in enumerate(records)))
    rows = []
    for i, record in enumerate(records):
        data = record.data
        row: dict[str, Any] = {
            "id": data.get("id", i),
            "shape": "ms-swift" if "messages" in data else "TRL",
            "case": data.get("case", ""),
        }
        for name in DEMO_WEIGHTS:
            status = result.statuses[name][i]
            row[name] = result.rewards[name][i] if status == "ok" else status
        row["total"] = result.totals[i]
        rows.append(row)
    render(rows, Format.table, title=f"run {run_id}: per-sample rewards", console=console)
    render(summary_rows(result), Format.table, title="summary", console=console)
    console.print(f"audit store: [bold]{settings.database_url}[/bold]")
    console.print(f"try: rewardq audit stats {run_id}")
    if out is not None:
        console.print(f"scored records written to {out}")
    return result
