"""`rewardq audit verify`: an intact run passes; a tampered one is named, row by row, with exit 1."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from rewardq.storage import make_engine, upgrade, write_scores
from rewardq.storage.chain import key_id
from tests.score_rows import score_row
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


def test_verify_names_rows_not_sealed_yet_and_seal_seals_them(sqlite_url: str) -> None:
    env = {"REWARDQ_DATABASE_URL": sqlite_url}
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    row = score_row(run_id="u1", batch_id="b", reward="format")
    with engine.begin() as conn:  # committed, as a worker leaves them until its sealer runs
        write_scores(conn, [{**row, "sample_index": i} for i in range(3)])
    engine.dispose()
    waiting = rewardq("audit", "verify", "u1", env=env)
    assert waiting.stdout.strip() == "run u1: 3 rows, none sealed yet"
    assert waiting.stderr.count("is not sealed yet") == 3
    assert "u1: row id 1 (seq None, batch b, sample 0, reward format) is not sealed yet" in waiting.stderr
    assert rewardq("audit", "seal", env=env).stdout.strip() == "run u1: 3 rows sealed"
    sealed = rewardq("audit", "verify", "u1", env=env)
    assert "run u1: 3 rows, chain intact (head seq 3" in sealed.stdout and sealed.stderr == ""
