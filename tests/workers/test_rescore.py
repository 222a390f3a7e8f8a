"""``score_file`` end to end on the embedded worker: streaming through a bounded window, output in input
order, nothing enqueued for bad input, and resuming from the audit (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from rewardq.client import RewardClient, ScoreHandle
from rewardq.rescore import score_file
from rewardq.storage import make_engine, scores_table
from rewardq.wire.errors import InvalidInputError
from rewardq.wire.settings import Settings
from rewardq.workers.cli.resume import AuditScores
from rewardq.workers.rewards.config import RewardsConfig

GOOD = "<think>a</think><answer>{}</answer>"


def verl_dump(path: Path, n: int) -> Path:
    """A verl rollout_data_dir file; every third completion misses the format."""
    lines = [
        {
            "input": f"user: {i}+0?",
            "output": GOOD.format(i) if i % 3 else f"just {i}",
            "gts": str(i),
            "score": 0.0,
            "step": 1,
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


class CountingClient(RewardClient):
    """The real client, counting the (sample, reward) scores it sends and the submissions out at once."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sent = 0
        self.outstanding = 0
        self.most_outstanding = 0

    def submit(self, samples: Sequence[Any], rewards: Any, **kwargs: Any) -> ScoreHandle:
        handle = super().submit(samples, rewards, **kwargs)
        self.sent += len(samples) * len(rewards)
        self.outstanding += 1
        self.most_outstanding = max(self.most_outstanding, self.outstanding)
        get = handle.get

        def counted_get(*a: Any, **k: Any) -> Any:
            self.outstanding -= 1
            return get(*a, **k)

        handle.get = counted_get  # type: ignore[method-assign]
        return handle


@pytest.fixture
def client(database_url: str) -> Iterator[CountingClient]:
    with CountingClient(Settings.from_env({}, database_url=database_url, chunk_size=8)) as c:
        yield c


def read_out(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def audit_rows(database_url: str, run_id: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            query = select(func.count()).select_from(scores_table).where(scores_table.c.run_id == run_id)
            return int(conn.scalar(query) or 0)
    finally:
        engine.dispose()


def stored(client: RewardClient, run_id: str, rewards: Sequence[str]) -> AuditScores:
    return AuditScores(client.settings, run_id, client.scorers(rewards))


def test_a_verl_dump_streams_through_the_window_and_comes_back_in_order(
    tmp_path: Path, client: CountingClient
) -> None:
    source = verl_dump(tmp_path / "12.jsonl", 100)
    out = tmp_path / "scored.jsonl"
    summary = score_file(client, source, out, {"format": 1.0}, run_id="r", window=3, progress=False)
    lines = read_out(out)
    assert [line["input"] for line in lines] == [f"user: {i}+0?" for i in range(100)]
    assert [line["rewards"]["format"] for line in lines] == [1.0 if i % 3 else 0.0 for i in range(100)]
    assert lines[1]["score"] == 0.0 and lines[1]["reward"] == 1.0  # verl's own score is kept beside ours
    assert client.most_outstanding == 3  # 13 chunks of 8, never more than the window in flight
    assert summary.samples == 100 and summary.counts["format"] == {"ok": 100}
    assert not out.with_name("scored.jsonl.partial").exists()


def test_bad_input_is_reported_by_line_and_nothing_is_enqueued(
    tmp_path: Path, client: CountingClient
) -> None:
    source = verl_dump(tmp_path / "1.jsonl", 50)
    text = source.read_text().splitlines()
    text[40] = json.dumps({"input": "x", "output": None, "gts": "1"})
    source.write_text("\n".join(text) + "\n")
    with pytest.raises(InvalidInputError) as info:
        score_file(client, source, tmp_path / "o.jsonl", {"format": 1.0}, run_id="r", progress=False)
    assert [(p.line, p.field) for p in info.value.problems] == [(41, "completion")]
    assert client.sent == 0 and not (tmp_path / "o.jsonl").exists()


def test_a_rerun_with_the_same_run_id_sends_only_what_the_audit_lacks(
    tmp_path: Path, client: CountingClient, database_url: str
) -> None:
    full = verl_dump(tmp_path / "full.jsonl", 60)
    half = tmp_path / "half.jsonl"  # what an interrupted run got through: the first 28 samples
    half.write_text("".join(full.read_text().splitlines(keepends=True)[:28]))
    score_file(client, half, None, {"format": 1.0}, run_id="job", progress=False)
    assert client.sent == 28

    out = tmp_path / "out.jsonl"
    summary = score_file(
        client,
        full,
        out,
        {"format": 1.0, "repetition": 0.0},
        run_id="job",
        stored=stored(client, "job", ["format", "repetition"]),
        progress=False,
    )
    assert client.sent == 28 + 32 + 60  # format: only the missing 32; repetition: all 60
    assert summary.resumed == {"format": 28, "repetition": 0}
    lines = read_out(out)
    assert [line["input"] for line in lines] == [f"user: {i}+0?" for i in range(60)]
    assert [line["rewards"]["format"] for line in lines] == [1.0 if i % 3 else 0.0 for i in range(60)]
    assert audit_rows(database_url, "job") == 60 + 60  # no sample scored twice by the same scorer

    again = score_file(
        client,
        full,
        out,
        {"format": 1.0},
        run_id="job",
        stored=stored(client, "job", ["format"]),
        progress=False,
    )
    assert again.resumed == {"format": 60} and client.sent == 120
    rewritten = read_out(out)
    assert [x["rewards"] for x in rewritten] == [{"format": x["rewards"]["format"]} for x in lines]
    assert [x["input"] for x in rewritten] == [x["input"] for x in lines]


def test_another_scorer_version_or_run_is_not_taken_from_the_audit(
    tmp_path: Path, client: CountingClient, database_url: str
) -> None:
    source = verl_dump(tmp_path / "d.jsonl", 20)
    score_file(client, source, None, {"format": 1.0}, run_id="v1", progress=False)
    assert stored(client, "other-run", ["format"]).lookup([{"completion": "x"}]) == {}
    config = tmp_path / "rewards.toml"
    config.write_text('[rewards.format]\nkind = "format"\npattern = "^<answer>.*</answer>$"\n')
    changed = Settings.from_env({}, database_url=database_url, rewards=config)
    lookup = AuditScores(changed, "v1", {"format": RewardsConfig.load(config).build("format").fingerprint})
    assert lookup.active  # the run is there …
    rows = [{"prompt": f"user: {i}+0?", "completion": GOOD.format(i), "solution": str(i)} for i in (1, 2)]
    assert lookup.lookup(rows) == {}  # … but not scored by this scorer
    assert stored(client, "v1", ["format"]).lookup(rows)["format"][0] is not None


def test_lookups_of_a_fresh_run_cost_no_query(client: CountingClient) -> None:
    lookup = stored(client, "never-seen", ["format"])
    assert not lookup.active and lookup.lookup([{"completion": "x"}]) == {}


def test_a_rollout_directory_is_scored_file_after_file_in_step_order(
    tmp_path: Path, client: CountingClient
) -> None:
    dump = tmp_path / "rollout_data_dir"
    dump.mkdir()
    for step, size in ((10, 3), (2, 2), (1, 1)):
        verl_dump(dump / f"{step}.jsonl", size)
    out = tmp_path / "all.jsonl"
    summary = score_file(client, dump, out, {"format": 1.0}, run_id="dir", progress=False)
    assert summary.samples == 6
    assert [line["input"] for line in read_out(out)] == [f"user: {i}+0?" for i in (0, 0, 1, 0, 1, 2)]


def _audit_steps(database_url: str, run_id: str) -> dict[int | None, int]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            c = scores_table.c
            query = select(c.step, func.count()).where(c.run_id == run_id).group_by(c.step)
            return {step: int(count) for step, count in conn.execute(query)}
    finally:
        engine.dispose()


def test_each_sample_is_audited_under_the_step_its_trainer_wrote_unless_one_is_given(
    tmp_path: Path, client: CountingClient, database_url: str
) -> None:
    # One file of a verl dump holding two steps, and an ms-swift table (steps logged as text).
    mixed = verl_dump(tmp_path / "mixed.jsonl", 12)
    lines = [
        {**json.loads(line), "step": 3 if i < 5 else 4}
        for i, line in enumerate(mixed.read_text().splitlines())
    ]
    mixed.write_text("".join(json.dumps(x) + "\n" for x in lines))
    score_file(client, mixed, tmp_path / "a.jsonl", {"format": 1.0}, run_id="steps", progress=False)
    assert _audit_steps(database_url, "steps") == {3: 5, 4: 7}
    swift = tmp_path / "completions.jsonl"
    table = {
        "step": ["7", "7", "8"],
        "prompt": ["p"] * 3,
        "completion": ["a", "b", "c"],
        "advantages": [0.1] * 3,
    }
    swift.write_text(json.dumps(table) + "\n")
    score_file(client, swift, tmp_path / "b.jsonl", {"format": 1.0}, run_id="swift", progress=False)
    assert _audit_steps(database_url, "swift") == {7: 2, 8: 1}
    # --step given: it holds for every sample, whatever the dump says.
    score_file(client, mixed, tmp_path / "c.jsonl", {"format": 1.0}, run_id="given", step=9, progress=False)
    assert _audit_steps(database_url, "given") == {9: 12}


def test_a_step_the_audit_cannot_hold_is_reported_by_line_before_anything_is_sent(
    tmp_path: Path, client: CountingClient
) -> None:
    source = verl_dump(tmp_path / "bad.jsonl", 3)
    lines = [
        {**json.loads(line), "step": "late" if i == 1 else 1}
        for i, line in enumerate(source.read_text().splitlines())
    ]
    source.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(InvalidInputError) as info:
        score_file(client, source, tmp_path / "o.jsonl", {"format": 1.0}, run_id="bad", progress=False)
    assert "line 2, field 'step': must be an integer" in str(info.value) and client.sent == 0
    score_file(client, source, tmp_path / "o.jsonl", {"format": 1.0}, run_id="bad", step=2, progress=False)
