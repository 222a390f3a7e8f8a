"""The ``[gateway.protocols.<name>]`` tables are checked when the gateway is built: a table that does not
hold stops it with the table and the field named."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rewardq import RewardClient, Settings
from rewardq.gateway.config import GatewayConfig
from rewardq.gateway.protocols import Protocols
from rewardq.gateway.state import Gateway
from rewardq.wire.errors import ConfigError


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    """A gateway whose client never connects: building the tables reads only the reward catalog."""
    settings = Settings.from_env({}, broker_url="redis://127.0.0.1:1/0")
    with RewardClient(settings) as client:
        yield Gateway(GatewayConfig(), client)


def test_tables_name_their_protocol_and_weights(gateway: Gateway) -> None:
    tables = {
        "openrlhf": {"rewards": {"accuracy": 1.0, "format": 0.5}, "run_id": "r"},
        "run-8": {"protocol": "slime", "rewards": ["accuracy"], "run_id": "r8", "answer": "dict"},
    }
    routes = Protocols.build(tables, gateway).routes
    assert (routes["openrlhf"].protocol, routes["openrlhf"].weights) == (
        "openrlhf",
        {"accuracy": 1.0, "format": 0.5},
    )
    assert (routes["run-8"].protocol, routes["run-8"].weights) == ("slime", {"accuracy": 1.0})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"rewards": ["nope"], "run_id": "r"}, "gateway.protocols.openrlhf: unknown reward 'nope'"),
        ({"rewards": {"accuracy": "x"}, "run_id": "r"}, "gateway.protocols.openrlhf.rewards"),
        ({"rewards": ["accuracy"]}, "gateway.protocols.openrlhf.run_id: Field required"),
        (
            {"rewards": ["accuracy"], "run_id": "r", "answer": "dict"},
            "answer applies to the slime protocol only",
        ),
        (
            {"rewards": ["accuracy"], "run_id": "r", "window": 5},
            "gateway.protocols.openrlhf.window: Extra inputs",
        ),
        ({"rewards": [], "run_id": "r"}, "gateway.protocols.openrlhf.rewards"),
    ],
)
def test_a_bad_table_stops_the_gateway_naming_the_field(
    gateway: Gateway, table: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Protocols.build({"openrlhf": table}, gateway)


def test_a_table_of_another_name_must_say_its_protocol(gateway: Gateway) -> None:
    with pytest.raises(ConfigError, match=r"gateway\.protocols\.run-8\.protocol: missing"):
        Protocols.build({"run-8": {"rewards": ["accuracy"], "run_id": "r"}}, gateway)
