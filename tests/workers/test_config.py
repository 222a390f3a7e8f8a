"""The rewards config, plugins and the kind registry."""

from pathlib import Path

import pytest

from rewardq import ConfigError, UnknownRewardError
from rewardq.catalog import BUILTIN_REWARDS
from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, Score
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.rewards.registry import BUILTIN_KINDS, RULE_KINDS, KindRegistry

PLUGIN = """
from rewardq.workers.rewards.base import Reward, RewardOptions, Score


class LengthReward(Reward):
    kind = "length"

    class Options(RewardOptions):
        per_char: float = 1.0

    def score(self, samples):
        return [Score.ok(len(s.completion_text) * self.options.per_char) for s in samples]


def register(kinds):
    kinds.add("length", LengthReward)
"""


def test_auto_served_kinds_are_the_producers_builtin_rewards_and_need_no_options() -> None:
    assert RULE_KINDS == BUILTIN_REWARDS
    kinds = KindRegistry()
    for kind in RULE_KINDS:
        assert kind in BUILTIN_KINDS
        kinds.resolve(kind).Options()  # builds with defaults: nothing required


def test_kinds_that_need_options_are_not_served_without_a_table() -> None:
    config = RewardsConfig.load(None)
    assert set(config.names) == set(RULE_KINDS)
    assert set(config.kinds.names()) >= set(RULE_KINDS)


def test_builtin_rewards_need_no_file_and_every_kind_resolves() -> None:
    config = RewardsConfig.load(None)
    assert config.names == sorted(BUILTIN_REWARDS)
    for kind in config.kinds.names():
        assert issubclass(config.kinds.resolve(kind), Reward)


def test_config_tables_bind_names_to_kinds_and_plugins_add_kinds(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "length.py").write_text(PLUGIN)
    path = tmp_path / "rewards.toml"
    path.write_text(
        'plugins = ["plugins/length.py"]\n'
        '[rewards.strict_fmt]\nkind = "format"\n'
        '[rewards.long]\nkind = "length"\nper_char = 0.5\n'
    )
    config = RewardsConfig.load(path)
    assert {"strict_fmt", "long", "format"} <= set(config.names)
    assert config.spec("strict_fmt").kind == "format"
    long = config.build("long")
    assert long.score([Sample(completion="abcd")]) == [Score.ok(2.0)]
    assert long.fingerprint.startswith("length@1:")
    with pytest.raises(UnknownRewardError, match="unknown reward 'nope'; known rewards: accuracy"):
        config.spec("nope")


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[rewards.x]\nkind = "nope"\n', r"\[rewards.x\]: unknown reward kind 'nope'; known kinds: accuracy"),
        ("[rewards.x]\n", r"\[rewards.x\]: 'kind' is required"),
        (
            '[rewards.x]\nkind = "format"\nbogus = 1\n',
            r"\[rewards.x\] \(kind format\): 'bogus': Extra inputs",
        ),
        ('[rewards."bad name"]\nkind = "format"\n', "a reward name is 1-64 letters"),
        ('plugins = ["missing.py"]\n', "plugin .*missing.py does not exist"),
        ("surprise = 1\n", "unknown top-level keys"),
        ("rewards = [", "not valid TOML"),
    ],
)
def test_bad_configs_say_what_is_wrong(tmp_path: Path, toml: str, needle: str) -> None:
    path = tmp_path / "rewards.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=needle):
        RewardsConfig.load(path)


def test_registry_rejects_duplicates_and_lists_known_kinds() -> None:
    kinds = KindRegistry()
    with pytest.raises(ConfigError, match="'format' is already registered"):
        kinds.add("format", "x:Y")
    with pytest.raises(ConfigError, match="must be a Reward subclass"):
        kinds.add("thing", object)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="known kinds: accuracy, code, cosine"):
        kinds.resolve("missing")


def test_plugin_without_register_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text("X = 1\n")
    path = tmp_path / "rewards.toml"
    path.write_text('plugins = ["p.py"]\n')
    with pytest.raises(ConfigError, match="has no register"):
        RewardsConfig.load(path)
