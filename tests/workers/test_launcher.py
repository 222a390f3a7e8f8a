"""Starting workers: pool choice for model kinds, rewards built before consuming, start-up failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rewardq.wire.errors import SettingsError
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.launcher import WorkerOptions, choose_pool, node_name
from tests.conftest import RedisServer

PLUGIN = """
from rewardq.wire.errors import RewardSetupError
from rewardq.workers.rewards.base import Reward, RewardOptions, Score


class HeavyOptions(RewardOptions):
    model: str
    fail: bool = False


class Heavy(Reward):
    kind = "heavy"
    holds_model = True
    Options = HeavyOptions

    def setup(self, resources):
        if self.options.fail:
            raise RewardSetupError(f"model {self.options.model} has no classification head")
        print("SETUP-DONE", flush=True)

    def score(self, samples):
        return [Score.ok(1.0) for _ in samples]


def register(kinds):
    kinds.add("heavy", Heavy)
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "heavy.py").write_text(PLUGIN)
    path = tmp_path / "rewards.toml"
    path.write_text(
        'plugins = ["heavy.py"]\n'
        '[rewards.rm]\nkind = "heavy"\nmodel = "/models/rm"\n'
        '[rewards.broken]\nkind = "heavy"\nmodel = "/models/causal-lm"\nfail = true\n'
    )
    return path


def test_model_kinds_default_to_solo_and_refuse_prefork(config_file: Path) -> None:
    config = RewardsConfig.load(config_file)
    assert choose_pool(config, WorkerOptions(["format"])) == "prefork"
    assert choose_pool(config, WorkerOptions(["format"], gpu="0")) == "solo"
    assert choose_pool(config, WorkerOptions(["rm", "format"])) == "solo"
    assert choose_pool(config, WorkerOptions(["rm"], pool="threads")) == "threads"
    with pytest.raises(SettingsError, match="rewards rm hold a model"):
        choose_pool(config, WorkerOptions(["rm"], pool="prefork"))
    with pytest.raises(SettingsError, match="GPU 1 would be shared"):
        choose_pool(config, WorkerOptions(["format"], gpu="1", pool="prefork"))


def test_the_node_name_carries_the_real_host_name() -> None:
    import os
    import socket

    assert node_name("1") == f"rewardq-gpu1-{os.getpid()}@{socket.gethostname()}"
    assert node_name(None).startswith("rewardq-cpu-") and "%h" not in node_name(None)


def test_a_reward_that_cannot_be_set_up_fails_the_worker_at_start(
    config_file: Path, redis_server: RedisServer, sqlite_url: str
) -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("rewardq")), "worker", "--rewards", "format,broken"],
        env={
            "PATH": str(Path(sys.executable).parent),
            "REWARDQ_BROKER_URL": redis_server.url,
            "REWARDQ_DATABASE_URL": sqlite_url,
            "REWARDQ_REWARDS": str(config_file),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "reward 'broken': model /models/causal-lm has no classification head" in proc.stderr
    assert " ready." not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_rewards_are_set_up_before_the_worker_consumes(
    config_file: Path, redis_server: RedisServer, sqlite_url: str, start_worker: object
) -> None:
    worker = start_worker(  # type: ignore[operator]
        redis_server.url, sqlite_url, "--rewards", "rm", env={"REWARDQ_REWARDS": str(config_file)}
    )
    out = worker.output()
    assert out.index("SETUP-DONE") < out.index(" ready.")


@pytest.mark.slow
def test_a_concurrency_the_solo_pool_ignores_is_said_at_start(
    config_file: Path, redis_server: RedisServer, sqlite_url: str, start_worker: object
) -> None:
    worker = start_worker(  # type: ignore[operator]
        redis_server.url,
        sqlite_url,
        "--rewards",
        "rm",
        "--concurrency",
        "2",
        env={"REWARDQ_REWARDS": str(config_file)},
    )
    said = [line for line in worker.output().splitlines() if "ignored" in line]
    assert len(said) == 1 and said[0].endswith(
        "reward rm holds a model: using the solo pool, --concurrency 2 ignored "
        "(use --pool threads for several tasks on one model copy)"
    )
