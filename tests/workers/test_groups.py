"""Groups at the worker: group-level kinds agree with the wire contract's list, a group over the bound
fails, and a flush of coalesced tasks keeps each task's groups apart even where their keys are equal."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from rewardq.storage import upgrade
from rewardq.wire.errors import ConfigError
from rewardq.wire.groups import GROUP_KINDS, MAX_GROUP_SIZE
from rewardq.wire.settings import Settings
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.rewards.registry import KindRegistry
from rewardq.workers.runtime.app import create_app
from rewardq.workers.runtime.coalesce import score_requests
from rewardq.workers.runtime.task import score_payload
from tests.group_kinds import rewards_file
from tests.workers.test_coalesce import _request


def test_kinds_that_see_groups_are_the_wire_contracts_group_kinds() -> None:
    kinds = KindRegistry()
    seeing = {name for name in kinds.names() if kinds.resolve(name).sees == "group"}
    assert seeing == GROUP_KINDS


def test_a_plugin_kind_that_sees_groups_must_be_listed_for_producers(tmp_path: Path) -> None:
    listed = rewards_file(tmp_path)
    assert RewardsConfig.load(listed).spec("groups").kind == "group_size"
    listed.write_text(listed.read_text().replace('group_kinds = ["group_size", ', "group_kinds = ["))
    with pytest.raises(ConfigError, match=r"kind 'group_size' sees a group.*list it in"):
        RewardsConfig.load(listed)
    listed.write_text(
        listed.read_text().replace("group_kinds = [", 'group_kinds = ["group_size", "stepper", ')
    )
    with pytest.raises(ConfigError, match=r"kind 'stepper' sees a sample.*remove it from"):
        RewardsConfig.load(listed)


def _payload(batch: str, offset: int, groups: list[int], group: str | None = None) -> dict[str, Any]:
    """A task of reward ``groups`` holding groups of these sizes (prompts q0, q1 …, or ``group``)."""
    samples = [
        {"prompt": f"q{g}", "completion": f"c{i}"} | ({"group": group} if group else {})
        for g, size in enumerate(groups)
        for i in range(size)
    ]
    return {"batch_id": batch, "run_id": "groups", "reward": "groups", "offset": offset, "samples": samples}


@pytest.fixture
def app(tmp_path: Path) -> Any:
    database = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(database)
    app = create_app(Settings.from_env({}, database_url=database, rewards=rewards_file(tmp_path)))
    yield app
    app.rewardq_runtime.close()
    app.close()


def test_a_flush_keeps_each_tasks_groups_apart(app: Any) -> None:
    first, second = _payload("b1", 0, [3, 2]), _payload("b2", 0, [3, 1])  # equal keys: prompts q0, q1
    # Task ids of their own: the in-memory result backend is one per process, and Celery keeps the first
    # success stored under an id (another test's "t1").
    t1, t2 = f"t1-{uuid.uuid4().hex}", f"t2-{uuid.uuid4().hex}"
    score_requests(app, app.rewardq_runtime, [_request(t1, first), _request(t2, second)])
    assert app.backend.get_task_meta(t1)["result"]["values"] == [3.0, 3.0, 3.0, 2.0, 2.0]
    assert app.backend.get_task_meta(t2)["result"]["values"] == [3.0, 3.0, 3.0, 1.0]


def test_a_group_over_the_bound_fails_at_the_worker(app: Any) -> None:
    answer = score_payload(app.rewardq_runtime, _payload("big", 0, [MAX_GROUP_SIZE + 1, 2], group="huge"))
    assert answer["statuses"] == ["error"] * (MAX_GROUP_SIZE + 3)  # the 2 share the group: "huge"
    assert (
        f"group 'huge' holds {MAX_GROUP_SIZE + 3} samples, over the limit of {MAX_GROUP_SIZE}"
        in answer["errors"]["0"]
    )
    fine = score_payload(app.rewardq_runtime, _payload("ok", 0, [MAX_GROUP_SIZE + 1, 2]))
    assert fine["statuses"][-2:] == ["ok", "ok"] and fine["values"][-2:] == [2.0, 2.0]
    assert fine["statuses"][0] == "error" and "over the limit" in fine["errors"]["0"]


def test_a_bad_group_at_the_worker_is_that_samples_error(app: Any) -> None:
    payload = _payload("bad", 0, [2])
    payload["samples"][0]["group"] = 7
    answer = score_payload(app.rewardq_runtime, payload)
    assert answer["statuses"] == ["error", "ok"] and answer["values"] == [None, 1.0]
    assert answer["errors"] == {
        "0": "invalid sample: field 'group': must be a string of 1 to 200 characters without NUL, got int"
    }
