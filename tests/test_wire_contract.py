"""Facts both sides share are stated once: the Redis keys in rewardq.wire.keys (with the strings running
fleets use), the length limits in the wire schema (the audit's columns follow them), the rule rewards'
names in the producer's catalog (the workers' registry builds their entries from them)."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from rewardq.catalog import BUILTIN_REWARDS
from rewardq.storage.models import ScoreRow
from rewardq.wire import keys
from rewardq.wire.schema import MAX_BATCH_ID, MAX_REWARD_NAME, MAX_RUN_ID, MAX_SAMPLE_ID
from rewardq.workers.rewards.registry import BUILTIN_KINDS, KindRegistry

# The installed sources of every side: the producer (the package rewardq), the workers, the storage.
SOURCES = [
    Path(location)
    for package in ("rewardq", "rewardq.workers", "rewardq.storage")
    for location in importlib.util.find_spec(package).submodule_search_locations or []  # type: ignore[union-attr]
]
KEYS_MODULE = Path(keys.__file__)
SHARED = re.compile(r"^(rewardq:\w|unacked(_index)?$|\x06\x16)")  # keys, not option names


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_no_module_but_the_wire_keys_spells_a_shared_redis_key() -> None:
    spelled = []
    modules = {p for root in SOURCES for p in root.rglob("*.py") if p != KEYS_MODULE}
    assert any(p.name == "heartbeat.py" for p in modules) and any(p.name == "serving.py" for p in modules)
    for path in modules:
        tree = ast.parse(path.read_text(), str(path))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and id(node) not in docs else None
            if isinstance(text, str) and SHARED.match(text):
                spelled.append(f"{path}:{node.lineno}: {text!r}")
    assert spelled == []


def test_the_key_strings_are_the_ones_running_fleets_use() -> None:
    assert keys.announcement_key("w@h") == "rewardq:worker:w@h"
    assert keys.WORKERS_INDEX == "rewardq:workers"
    assert keys.run_scorers_key("R") == "rewardq:run:R:scorers"
    assert keys.DLQ_KEY == "rewardq:dlq"
    assert keys.deliveries_key("t1") == "rewardq:deliveries:t1"
    assert keys.CACHE_PREFIX == "rewardq:cache:"
    assert (keys.UNACKED_KEY, keys.UNACKED_INDEX) == ("unacked", "unacked_index")
    assert keys.priority_lists("rewards.format") == ["rewards.format", "rewards.format\x06\x169"]


def test_the_audit_columns_are_as_long_as_the_wire_allows() -> None:
    columns = ScoreRow.__table__.c
    lengths = {
        name: getattr(columns[name].type, "length", None)
        for name in ("run_id", "batch_id", "sample_id", "reward")
    }
    assert lengths == {
        "run_id": MAX_RUN_ID,
        "batch_id": MAX_BATCH_ID,
        "sample_id": MAX_SAMPLE_ID,
        "reward": MAX_REWARD_NAME,
    }


def test_every_catalog_rule_reward_is_a_worker_kind_found_by_its_name() -> None:
    kinds = KindRegistry()
    for name in BUILTIN_REWARDS:
        cls = kinds.resolve(name)
        assert BUILTIN_KINDS[name] == f"{cls.__module__}:{cls.__qualname__}"
        assert cls.__module__.endswith(f".rules.{name}")
