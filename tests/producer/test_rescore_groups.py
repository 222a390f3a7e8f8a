"""Resuming a rescoring run with a group-level reward: a group the audit holds only in part is sent again
whole, since its members' values depend on each other; pointwise rewards resume sample by sample."""

from __future__ import annotations

from rewardq.formats import Row
from rewardq.rescore import Stored, _whole_groups


def test_a_group_held_in_part_is_sent_again_whole() -> None:
    rows = [Row(i + 1, {}, {"prompt": prompt, "completion": f"c{i}"}) for i, prompt in enumerate("aabb")]
    hit = Stored(1.0, "ok", None)
    found = {"pairs": [hit, None, hit, hit], "format": [hit, None, hit, hit]}
    out = _whole_groups(rows, found, frozenset({"pairs"}))
    assert list(out["pairs"]) == [None, None, hit, hit]
    assert list(out["format"]) == [hit, None, hit, hit]
    assert _whole_groups(rows, {"pairs": [hit] * 4}, frozenset({"pairs"})) == {"pairs": [hit] * 4}
