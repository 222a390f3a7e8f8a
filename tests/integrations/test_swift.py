"""ms-swift's real GRPO trainer (``swift rlhf --rlhf_type grpo``) on a tiny local Qwen2, on the CPU and
offline, with a plugin file that registers ``orm(...)`` and rewards from a real `rewardq worker` over
Redis: the per-completion rewards ms-swift logged equal the weighted totals of the audit rows."""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rewardq import weighted_total
from tests.conftest import RedisServer, WorkerProcess
from tests.swift_venv import swift_python
from tests.tinymodels import build_causal_lm

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

WEIGHTS = {"accuracy": 1.0, "cosine": 0.5}
PLUGIN = f"""
from swift.rewards import orms
from rewardq.integrations.swift import orm

orms["rq"] = orm(rewards={WEIGHTS!r}, run_id="swift-run")
"""
PROMPTS = [
    ("What is 1 + 1?", "$2$"),
    ("What is 2 + 2?", ""),
    ("What is 3 + 3?", "$6$"),
    ("What is 4 + 4?", "$8$"),
]


def _audit_totals(database_url: str) -> dict[int, list[float]]:
    """Per step, each sample's weighted total from the audit rows (NaN where none has a value)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = list(
                conn.execute(
                    sa.text(
                        "SELECT step, sample_index, reward, value FROM scores WHERE run_id = 'swift-run' "
                        "ORDER BY step, sample_index"
                    )
                )
            )
    finally:
        engine.dispose()
    values: dict[int, dict[int, dict[str, float | None]]] = {}
    for step, index, reward, value in rows:
        values.setdefault(step, {}).setdefault(index, {})[reward] = value
    totals: dict[int, list[float]] = {}
    for step, samples in values.items():
        per_sample = [weighted_total(samples[i], WEIGHTS) for i in sorted(samples)]
        totals[step] = [math.nan if t is None else t for t in per_sample]
    return totals


def _swift_rlhf(python: Path, tmp_path: Path, broker_url: str) -> Path:
    model = build_causal_lm(tmp_path / "lm")
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": q}], "solution": s}) + "\n"
            for q, s in PROMPTS
        )
    )
    (tmp_path / "plugin.py").write_text(PLUGIN)
    out = tmp_path / "out"
    args = [
        *("rlhf", "--rlhf_type", "grpo", "--model", str(model), "--model_type", "qwen2"),
        *("--template", "qwen2_5", "--tuner_type", "full", "--use_cpu", "true", "--check_model", "false"),
        *("--use_vllm", "false", "--external_plugins", "plugin.py", "--reward_funcs", "rq"),
        *("--dataset", str(data), "--num_generations", "2", "--per_device_train_batch_size", "2"),
        *("--max_completion_length", "8", "--max_steps", "2", "--logging_steps", "1"),
        *("--save_strategy", "no", "--report_to", "none", "--torch_dtype", "float32"),
        *("--dataloader_num_workers", "0", "--log_completions", "true", "--output_dir", str(out)),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env.update({"REWARDQ_BROKER_URL": broker_url, "HF_HUB_OFFLINE": "1", "MODELSCOPE_OFFLINE": "1"})
    done = subprocess.run(
        [str(python.with_name("swift")), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [completions] = out.glob("*/completions.jsonl")
    return completions


def test_ms_swift_grpo_logs_the_rewards_the_audit_holds(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    python = swift_python()
    start_worker(redis_server.url, sqlite_url, "--rewards", "accuracy,cosine", "--concurrency", "1")
    completions = _swift_rlhf(python, tmp_path, redis_server.url)

    audit = _audit_totals(sqlite_url)
    assert sorted(audit) == [0, 1], "one batch per training step, stamped with trainer_state.global_step"
    logged: list[dict[str, Any]] = [json.loads(line) for line in completions.read_text().splitlines()]
    assert logged
    for entry in logged:
        step = int(entry["step"][0]) - 1  # ms-swift logs after the step, the reward was computed before
        theirs, ours = entry["rewardq"], audit[step]
        assert len(theirs) == len(ours)
        for a, b in zip(theirs, ours, strict=True):
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-6), (step, theirs, ours)
