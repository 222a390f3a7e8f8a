"""Tiny offline models for the model-reward tests, built once per session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.tinymodels import build_causal_lm, build_classifier, build_token_classifier


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "models"


@pytest.fixture(scope="session")
def classifier_right(models_dir: Path) -> Path:
    return build_classifier(models_dir / "rm-right", padding_side="right")


@pytest.fixture(scope="session")
def classifier_left(models_dir: Path) -> Path:
    return build_classifier(models_dir / "rm-left", padding_side="left")


@pytest.fixture(scope="session")
def classifier_three_labels(models_dir: Path) -> Path:
    return build_classifier(models_dir / "rm-3", num_labels=3, seed=1)


@pytest.fixture(scope="session")
def token_classifier(models_dir: Path) -> Path:
    """A tiny process reward model: 2-label token classifier, ``<extra_0>`` a special token."""
    return build_token_classifier(models_dir / "prm")


@pytest.fixture(scope="session")
def causal_lm(models_dir: Path) -> Path:
    return build_causal_lm(models_dir / "lm")


@pytest.fixture(scope="session")
def classifier_without_template(models_dir: Path, classifier_right: Path) -> Path:
    """The right-padded classifier with its chat template removed."""
    target = models_dir / "rm-no-template"
    if not target.exists():
        shutil.copytree(classifier_right, target)
        (target / "chat_template.jinja").unlink(missing_ok=True)
        config_file = target / "tokenizer_config.json"
        config = json.loads(config_file.read_text())
        config.pop("chat_template", None)
        config_file.write_text(json.dumps(config))
    return target
