"""Model loading helpers: path resolution, identity without loading, dtype, one copy per process."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewardq import Settings
from rewardq.wire.errors import RewardSetupError
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.models.loading import (
    ModelOptions,
    load_shared,
    model_identity,
    require_path,
    resolve_dtype,
)
from tests.tinymodels import build_classifier


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_classifier(tmp_path_factory.mktemp("models") / "rm")


def test_identity_names_the_resolved_path_and_hashes_config_and_weights(classifier: Path) -> None:
    first = model_identity(str(classifier))
    assert first["model"] == str(classifier.resolve()) and len(first["weights"]) == 16
    assert model_identity(str(classifier)) == first
    (classifier / "config.json").write_text((classifier / "config.json").read_text() + " ")
    assert model_identity(str(classifier))["weights"] != first["weights"]


def test_a_missing_model_is_a_setup_error_naming_reward_and_model(tmp_path: Path) -> None:
    with pytest.raises(RewardSetupError, match=r"reward 'rm': model '.*nowhere' not found"):
        require_path("rm", str(tmp_path / "nowhere"))
    with pytest.raises(RewardSetupError, match="not in the local Hugging Face cache"):
        require_path("rm", "some-org/not-downloaded-model")


def test_dtype_auto_is_fp32_on_cpu_and_bf16_on_gpu() -> None:
    import torch

    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda") == torch.bfloat16
    assert resolve_dtype("float16", "cpu") == torch.float16
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("int8", "cpu")


def test_load_shared_keeps_one_copy_and_wraps_load_errors(classifier: Path) -> None:
    resources = WorkerResources(Settings.from_env({}))
    loads: list[Path] = []

    def factory(path: Path, dtype: object, device: str) -> str:
        loads.append(path)
        return f"model@{device}"

    one = load_shared(resources, "seq-cls", ModelOptions(model=str(classifier)), factory, reward="a")
    two = load_shared(resources, "seq-cls", ModelOptions(model=str(classifier)), factory, reward="b")
    assert one == two == "model@cpu" and loads == [classifier.resolve()]

    def broken(path: Path, dtype: object, device: str) -> str:
        raise MemoryError("CUDA out of memory")

    with pytest.raises(RewardSetupError, match=r"reward 'c': cannot load causal-lm from .*MemoryError"):
        load_shared(resources, "causal-lm", ModelOptions(model=str(classifier)), broken, reward="c")
