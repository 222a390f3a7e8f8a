"""`rewardq audit verify`: an intact run passes; a tampered one is named, row by row, with exit 1."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from rewardq.storage import make_engine
from rewardq.storage.chain import key_id
from tests.workers.test_cli import ROLLOUTS, rewardq, write_jsonl


def test_verify_passes_an_intact_run_and_names_an_edited_row(tmp_path: Path, sqlite_url: str) -> None:
    env = {"REWARDQ_DATABASE_URL": sqlite_url, "REWARDQ_AUDIT_KEY": "k3y"}
    source = write_jsonl(tmp_path / "in.jsonl", ROLLOUTS)
    rewardq(
        "score",
        str(source),
        "-r",
        "format",
        "-o",
        str(tmp_path / "out.jsonl"),
        "--run-id",
        "v1",
        "--no-progress",
        env=env,
    )
    ok = rewardq("audit", "verify", "v1", env=env)
    assert "run v1: 3 rows, chain intact (head seq 3" in ok.stdout
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        target = conn.execute(text("SELECT id FROM scores WHERE chain_seq = 2")).scalar_one()
        conn.execute(text("UPDATE scores SET value = 0.5 WHERE id = :i"), {"i": target})
    engine.dispose()
    bad = rewardq("audit", "verify", "v1", env=env, check=False)
    assert bad.returncode == 1
    assert f"row id {target} (seq 2" in bad.stderr and "was edited" in bad.stderr
    wrong_key = rewardq("audit", "verify", "v1", env={**env, "REWARDQ_AUDIT_KEY": "other"}, check=False)
    assert wrong_key.returncode == 2
    assert wrong_key.stderr.strip().splitlines() == [
        "run v1: REWARDQ_AUDIT_KEY: the key does not match the run's seal (sealed with key id "
        f"{key_id(b'k3y')}, this key's id is {key_id(b'other')}); no row was checked"
    ]
    assert "k3y" not in ok.stdout + bad.stdout + bad.stderr
    missing = rewardq("audit", "verify", "nope", env=env, check=False)
    assert missing.returncode == 2 and "no scores of run 'nope'" in missing.stderr
