"""Secrets rewardq knows of are masked wherever it prints them."""

from __future__ import annotations

from pathlib import Path

from rewardq.connection import masked
from rewardq.workers.cli.secrets import known_secrets, masked_options, redact
from tests.workers.test_cli import rewardq


def test_known_secrets_come_from_the_audit_key_and_the_urls_passwords() -> None:
    env = {
        "REWARDQ_BROKER_URL": "redis://trainer:p%40ss@h:6379/0",
        "REWARDQ_DATABASE_URL": "postgresql://u:dbpw@h/db",
        "REWARDQ_AUDIT_KEY": "k3y-secret",
        "REWARDQ_RESULT_BACKEND": "redis://h:6379/1",
    }
    assert sorted(known_secrets(env)) == ["dbpw", "k3y-secret", "p@ss"]
    text = "redis://trainer:p%40ss@h failed; key k3y-secret; pg dbpw"
    assert redact(text, known_secrets(env)) == "redis://trainer:**@h failed; key **; pg **"


def test_urls_in_options_lose_their_password() -> None:
    options = {
        "base_url": ["http://u:pw@judge:8000/v1", "http://judge2/v1"],
        "x": {"y": "https://:t@h/p?q=1"},
    }
    assert masked_options(options) == {
        "base_url": ["http://u:**@judge:8000/v1", "http://judge2/v1"],
        "x": {"y": "https://:**@h/p?q=1"},
    }
    assert masked("http://u:pw@h") == "http://u:**@h"


def test_rewardq_rewards_masks_a_judge_url_password(tmp_path: Path) -> None:
    config = tmp_path / "rewards.toml"
    config.write_text('[rewards.judge]\nkind = "judge"\nbase_url = "http://user:judge-pw-1@127.0.0.1:1/v1"\n')
    out = rewardq("rewards", "--config", str(config)).stdout
    assert "judge-pw-1" not in out and "user:**@127.0.0.1" in out
