"""The heartbeat announcement is one model (rewardq.wire.announcement): what a worker's heartbeat writes
is what a producer's serving check, its scorer pins and ``rewardq status`` read, and readers of another
version's announcements keep what they understand and skip what they cannot read."""

from __future__ import annotations

import json
import time

from rewardq import Settings
from rewardq.scorers import scorers_of
from rewardq.serving import ServingCheck, read_announcements, redis_client
from rewardq.wire.announcement import Announcement
from rewardq.wire.keys import WORKERS_INDEX, announcement_key
from rewardq.workers.cli.status import read_status
from rewardq.workers.runtime.heartbeat import Heartbeat
from tests.conftest import RedisServer


def _announcement() -> Announcement:
    return Announcement(
        node="w1@box",
        rewards=["format"],
        queues=["rewards.format"],
        gpu="0",
        pool="solo",
        concurrency=1,
        fingerprints={"format": "format@1:abc"},
        host="box",
        pid=123,
        started_at=1.5,
    )


def test_what_the_heartbeat_writes_is_what_serving_and_status_read(redis_server: RedisServer) -> None:
    settings = Settings.from_env({}, broker_url=redis_server.url, heartbeat=0.2, serve_wait=0.1)
    mine = _announcement()
    heartbeat = Heartbeat(settings, mine)
    client = redis_client(settings)
    check = ServingCheck(settings)
    try:
        heartbeat.claim()
        [claim] = read_announcements(client)
        assert claim == mine.model_copy(update={"starting": True, "beat_at": claim.beat_at})
        assert claim.beat_at is not None and check.read() == set()  # a claim does not serve yet

        heartbeat.start(consumer=None)  # a consumer holding no tasks
        deadline = time.monotonic() + 30
        while read_announcements(client)[0].starting and time.monotonic() < deadline:
            time.sleep(0.05)
        [beat] = read_announcements(client)
        assert "starting" not in json.loads(client.get(announcement_key(mine.node)))
        assert beat == mine.model_copy(update={"beat_at": beat.beat_at, "held": 0})
        assert check.read() == {"format"} and check.fingerprints(["format"]) == {"format": "format@1:abc"}
        assert read_status(settings).workers == [beat]
    finally:
        heartbeat.stop()
        check.close()
    assert read_announcements(client) == []
    client.close()


def test_readers_keep_other_versions_announcements_and_skip_unreadable_ones(
    redis_server: RedisServer,
) -> None:
    settings = Settings.from_env({}, broker_url=redis_server.url)
    client = redis_client(settings)
    entries: dict[str, bytes] = {
        "old@box": json.dumps({"node": "old@box", "rewards": ["format"]}).encode(),  # before fingerprints
        "new@box": json.dumps(
            {"node": "new@box", "rewards": ["format"], "fingerprints": {"format": "f@2:1"}, "zone": "eu"}
        ).encode(),  # a field of a later version
        "text@box": b"not json",
        "list@box": b'["new@box"]',
        "typed@box": json.dumps({"node": "typed@box", "rewards": 7}).encode(),
        "nameless@box": json.dumps({"rewards": ["format"]}).encode(),
    }
    for node, raw in entries.items():
        client.set(announcement_key(node), raw, ex=60)
    client.zadd(WORKERS_INDEX, dict.fromkeys(entries, time.time() + 60))
    try:
        read = sorted(read_announcements(client), key=lambda a: a.node)
    finally:
        client.close()
    assert [a.node for a in read] == ["new@box", "old@box"]
    new, old = read
    assert (old.rewards, old.fingerprints, old.held, old.starting) == (["format"], {}, 0, False)
    assert "zone" not in new.model_dump()
    assert scorers_of(read) == {"format": {"f@2:1": ["new@box"], None: ["old@box"]}}
