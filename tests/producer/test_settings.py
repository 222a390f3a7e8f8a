"""Settings from REWARDQ_* variables."""

from pathlib import Path

import pytest

from rewardq import Settings, SettingsError


def test_defaults_are_embedded_with_a_sqlite_audit_file_under_rewardq_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"REWARDQ_HOME": str(tmp_path)})
    assert settings.embedded
    assert settings.database_url == f"sqlite:///{tmp_path / 'audit.db'}"
    assert settings.backend_url is None


def test_environment_values_are_parsed_and_overrides_win() -> None:
    env = {
        "REWARDQ_BROKER_URL": "redis://h:1/0",
        "REWARDQ_CHUNK_SIZE": "64",
        "REWARDQ_STORE_TEXT": "yes",
        "REWARDQ_TIMEOUT": "2.5",
        "REWARDQ_REWARDS": "~/r.toml",
    }
    settings = Settings.from_env(env, chunk_size=8, rewards=None)
    assert not settings.embedded
    assert settings.backend_url == "redis://h:1/0"
    assert settings.chunk_size == 8
    assert settings.store_text is True
    assert settings.timeout == 2.5
    assert settings.rewards == Path("~/r.toml").expanduser()


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"REWARDQ_CHUNK_SIZE": "many"}, "REWARDQ_CHUNK_SIZE='many' is not valid"),
        ({"REWARDQ_CHUNK_SIZE": "0"}, "REWARDQ_CHUNK_SIZE must be from 1 to 1,000,000, got 0"),
        ({"REWARDQ_STORE_TEXT": "maybe"}, "REWARDQ_STORE_TEXT='maybe'"),
        ({"REWARDQ_HEARTBEAT": "30", "REWARDQ_VISIBILITY_TIMEOUT": "50"}, "three"),
        ({"REWARDQ_MAX_DELIVERIES": "0"}, "REWARDQ_MAX_DELIVERIES"),
        ({"REWARDQ_SERVE_WAIT": "-1"}, "REWARDQ_SERVE_WAIT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle.replace("(", r"\(")):
        Settings.from_env(env)
