"""Options of ``judge`` and ``remote_reward_model``: validated with clear errors, importing no HTTP client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from rewardq.workers.cli.render import Format, render
from rewardq.workers.rewards.judges.options import JudgeOptions
from rewardq.workers.rewards.judges.prompts import DEFAULT_JUDGE_TEMPLATE

URL = "http://127.0.0.1:8000/v1"


def test_one_url_or_a_list_of_replicas() -> None:
    assert JudgeOptions(base_url=URL + "/").base_url == (URL,)
    assert JudgeOptions(base_url=[URL, "http://other:8000/v1"]).base_url == (URL, "http://other:8000/v1")
    with pytest.raises(ValidationError, match="not an http"):
        JudgeOptions(base_url="localhost:8000")
    with pytest.raises(ValidationError, match="non-empty list"):
        JudgeOptions(base_url=[])
    with pytest.raises(ValidationError, match="listed twice"):
        JudgeOptions(base_url=[URL, URL])


def test_the_default_template_is_read_on_its_0_to_10_scale() -> None:
    assert JudgeOptions(base_url=URL).score_range == (0.0, 10.0)
    assert JudgeOptions(base_url=URL, template="Grade {completion}").score_range is None
    assert JudgeOptions(base_url=URL, score_range=(1, 5)).score_range == (1.0, 5.0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"structured": {}}, "exactly one of"),
        ({"structured": {"choice": ["1"], "regex": "[0-9]"}}, "exactly one of"),
        ({"structured": {"regex": "(unclosed"}}, "not a valid regular expression"),
        ({"structured": {"choice": ["1", "1"]}}, "twice"),
        ({"parser": "Score: [0-9]"}, "exactly one group"),
        ({"parser": "("}, "not a valid regular expression"),
        ({"labels": ["good", "bad"]}, "go together"),
        ({"labels": ["good", "bad"], "passing_labels": ["great"]}, "not among `labels`"),
        ({"labels": ["a", "b"], "passing_labels": ["a"], "score_range": (0, 1)}, "does not apply"),
        ({"labels": ["a", "b"], "passing_labels": ["a"], "structured": {"choice": ["a", "c"]}}, "only list"),
        ({"score_range": (5, 1)}, "low < high"),
        ({"extra_body": {"n": 3}}, "may not set"),
        ({"structured": {"choice": ["1"]}, "extra_body": {"structured_outputs": {}}}, "not in `extra_body`"),
        ({"api_key_env": "my key"}, "api_key_env"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"temprature": 0.5}, "Extra inputs"),
    ],
)
def test_bad_options_name_the_field_and_the_problem(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        JudgeOptions(base_url=URL, **options)  # type: ignore[arg-type]


def test_structured_output_requests() -> None:
    choice = JudgeOptions(base_url=URL, structured={"choice": ["0", "1"]}).structured_output()
    assert choice is not None and choice.request() == {"choice": ["0", "1"]}
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    json_out = JudgeOptions(base_url=URL, structured={"json": schema}).structured_output()
    assert json_out is not None and json_out.request() == {"json": schema}
    labels = JudgeOptions(base_url=URL, labels=["pass", "fail"], passing_labels=["pass"])
    implied = labels.structured_output()
    assert implied is not None and implied.request() == {"choice": ["pass", "fail"]}


def test_validating_a_rewards_file_does_not_import_http_clients(tmp_path: Path) -> None:
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(
        '[rewards.j]\nkind = "judge"\nbase_url = "http://127.0.0.1:1/v1"\n'
        '[rewards.rm]\nkind = "remote_reward_model"\nbase_url = "http://127.0.0.1:1/v1"\n'
    )
    code = (
        "import sys\nfrom pathlib import Path\nfrom rewardq.workers.rewards.config import RewardsConfig\n"
        f"config = RewardsConfig.load(Path({str(rewards)!r}))\n"
        "config.build('j'); config.build('rm')\n"
        "assert not {'openai', 'aiohttp', 'torch'} & set(sys.modules), 'imported'\n"
        "print(config.spec('j').kind, config.spec('rm').kind)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["judge", "remote_reward_model"]


def test_listing_a_judge_shows_its_template_verbatim() -> None:
    from rich.console import Console

    console = Console(record=True, width=400)
    options = JudgeOptions(base_url=URL).model_dump(mode="json")
    render([{"reward": "judge", "options": options}], Format.table, console=console)
    assert "[/RESPONSE]" in DEFAULT_JUDGE_TEMPLATE and "[/RESPONSE]" in console.export_text()
