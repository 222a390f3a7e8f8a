"""The rewards config: which rewards a worker serves, each a name bound to a kind and its options.

    plugins = ["my_rewards.py"]          # files with a register(kinds) function, relative to this file
    group_kinds = ["my_listwise"]        # a plugin's kinds that score whole groups (``sees = "group"``)
    step_kinds = ["my_prm"]              # a plugin's kinds whose scores have steps (rewardq.catalog)

    [rewards.strict_fmt]
    kind = "format"
    pattern = '^<think>.*?</think>\\s*<answer>.*?</answer>(?![\\s\\S])'

Built-in rule rewards are served under their kind's name with default options and no file at all;
a table of the same name overrides those options.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from rewardq.catalog import group_kinds, read_rewards_file
from rewardq.wire.errors import ConfigError, UnknownRewardError
from rewardq.wire.schema import MAX_REWARD_NAME, RewardName
from rewardq.workers.rewards.base import Reward, RewardOptions
from rewardq.workers.rewards.registry import RULE_KINDS, KindRegistry

_REWARD_NAME = TypeAdapter(RewardName)


@dataclass(frozen=True)
class RewardSpec:
    """A configured reward: its name, kind and validated options."""

    name: str
    kind: str
    options: RewardOptions


@dataclass(frozen=True)
class RewardsConfig:
    """The rewards a worker can serve, and the kinds they are built from."""

    kinds: KindRegistry
    specs: dict[str, RewardSpec]
    path: Path | None = None
    plugins: list[Path] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return sorted(self.specs)

    def spec(self, name: str) -> RewardSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise UnknownRewardError(name, self.names) from None

    def build(self, name: str) -> Reward:
        spec = self.spec(name)
        return self.kinds.resolve(spec.kind)(spec.name, spec.options)

    @classmethod
    def load(cls, path: Path | None) -> RewardsConfig:
        """Read a rewards file (None: built-in rewards only), load its plugins, validate every option."""
        kinds = KindRegistry()
        doc = read_rewards_file(path) if path is not None else {}
        unknown = set(doc) - {"plugins", "rewards", "group_kinds", "step_kinds"}
        if unknown:
            raise ConfigError(
                f"{path}: unknown top-level keys {sorted(unknown)}; expected 'plugins', 'rewards', "
                "'group_kinds' and 'step_kinds'"
            )
        plugins = [_load_plugin(path, p, kinds) for p in _plugin_paths(path, doc.get("plugins", []))]
        tables: dict[str, Any] = {name: {"kind": name} for name in RULE_KINDS}
        configured = doc.get("rewards", {})
        if not isinstance(configured, dict):
            raise ConfigError(f"{path}: 'rewards' must be a table of [rewards.<name>] tables")
        tables.update(configured)
        specs = {name: _spec(path, name, table, kinds) for name, table in tables.items()}
        _check_group_kinds(path, specs, kinds, group_kinds(doc))
        return cls(kinds=kinds, specs=specs, path=path, plugins=plugins)


def _check_group_kinds(
    path: Path | None, specs: dict[str, RewardSpec], kinds: KindRegistry, listed: frozenset[str]
) -> None:
    """A configured reward's kind scores groups exactly when producers are told so (they read the kind's
    name, never its class): it is in GROUP_KINDS or the file's ``group_kinds``."""
    for spec in specs.values():
        sees = kinds.resolve(spec.kind).sees
        if (sees == "group") != (spec.kind in listed):
            need = "list it in" if sees == "group" else "remove it from"
            raise ConfigError(
                f"{path}: [rewards.{spec.name}]: kind {spec.kind!r} sees a {sees}, but producers would "
                f"chunk it as if it saw a {'sample' if sees == 'group' else 'group'}: {need} the rewards "
                "file's top-level 'group_kinds'"
            )


def _spec(path: Path | None, name: str, table: Any, kinds: KindRegistry) -> RewardSpec:
    where = f"{path}: [rewards.{name}]"
    try:
        _REWARD_NAME.validate_python(name)
    except ValidationError:
        raise ConfigError(
            f"{where}: a reward name is 1-{MAX_REWARD_NAME} letters, digits, '_', '.', '-'"
        ) from None
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    options = dict(table)
    kind = options.pop("kind", None)
    if not isinstance(kind, str):
        raise ConfigError(
            f"{where}: 'kind' is required and must be a string (one of {', '.join(kinds.names())})"
        )
    try:
        reward_cls = kinds.resolve(kind)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e
    try:
        # The context lets an option resolve a path relative to the rewards file.
        options_model = reward_cls.Options.model_validate(options, context={"rewards_file": path})
    except ValidationError as e:
        problems = "; ".join(
            f"'{'.'.join(str(p) for p in err['loc'])}': {err['msg']}" for err in e.errors(include_url=False)
        )
        raise ConfigError(f"{where} (kind {kind}): {problems}") from e
    if options_model.per_turn and not reward_cls.turns_allowed:
        raise ConfigError(
            f"{where} (kind {kind}): 'per_turn': this kind cannot score per turn (only kinds that score "
            "one completion alone into one value can)"
        )
    return RewardSpec(name, kind, options_model)


def _plugin_paths(path: Path | None, entries: Any) -> list[Path]:
    if not isinstance(entries, list) or not all(isinstance(p, str) for p in entries):
        raise ConfigError(f"{path}: 'plugins' must be a list of file paths")
    base = path.parent if path is not None else Path.cwd()
    return [(base / p).resolve() for p in entries]


def _load_plugin(config: Path | None, plugin: Path, kinds: KindRegistry) -> Path:
    if not plugin.is_file():
        raise ConfigError(f"{config}: plugin {plugin} does not exist")
    module_name = f"rewardq_plugin_{hashlib.sha256(str(plugin).encode()).hexdigest()[:10]}_{plugin.stem}"
    spec = importlib.util.spec_from_file_location(module_name, plugin)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{config}: cannot import plugin {plugin}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ConfigError(f"{config}: plugin {plugin} failed to import: {type(e).__name__}: {e}") from e
    register = getattr(module, "register", None)
    if not callable(register):
        raise ConfigError(f"{config}: plugin {plugin} has no register(kinds) function")
    register(kinds)
    return plugin
