"""The local-worker port: the client finds the embedded worker through its entry point, never by name."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from rewardq import EmbeddedUnavailable, RewardClient, Settings, local_worker
from rewardq.local_worker import ENTRY_POINT_GROUP, ENTRY_POINT_NAME, StartLocalWorker, start_local_worker


def test_the_installed_entry_point_is_the_embedded_worker() -> None:
    from rewardq.workers.runtime.embedded import EmbeddedWorker

    (entry,) = local_worker.entry_points(group=ENTRY_POINT_GROUP, name=ENTRY_POINT_NAME)
    start: StartLocalWorker = entry.load()
    assert start == EmbeddedWorker.start


def entry_points_giving(found: list[EntryPoint]) -> Any:
    return lambda **_: found


@pytest.mark.parametrize(
    ("found", "cause"),
    [
        ([], "no 'rewardq.local_worker' entry point 'embedded' is installed"),
        (
            [EntryPoint(ENTRY_POINT_NAME, "rewardq_not_installed.embedded:start", ENTRY_POINT_GROUP)],
            "No module named 'rewardq_not_installed'",
        ),
    ],
)
def test_a_missing_local_worker_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, found: list[EntryPoint], cause: str
) -> None:
    monkeypatch.setattr(local_worker, "entry_points", entry_points_giving(found))
    with pytest.raises(EmbeddedUnavailable) as raised:
        start_local_worker(Settings.from_env({}))
    (line,) = str(raised.value).splitlines()
    assert "pip install 'rewardq[worker]'" in line and cause in line
    with pytest.raises(EmbeddedUnavailable), RewardClient(Settings.from_env({})) as client:
        _ = client.app
