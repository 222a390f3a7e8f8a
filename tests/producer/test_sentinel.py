"""What a ``sentinel://`` URL and the REWARDQ_SENTINEL_* settings become for each kind of client (the
failover itself, with real sentinels: tests/faults/test_fault_failover.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from rewardq import Settings
from rewardq.broker import celery_config
from rewardq.sentinel import master_options, sentinels
from rewardq.serving import redis_client
from rewardq.wire.errors import SettingsError
from rewardq.workers.runtime.transport import worker_transport

URL = "sentinel://:pw@10.0.0.1:26379/2;sentinel://10.0.0.2:26380;sentinel://10.0.0.3"


def settings(**values: object) -> Settings:
    return Settings.from_env({}, broker_url=URL, sentinel_master="mymaster", **values)


def test_a_sentinel_url_needs_the_master_name() -> None:
    with pytest.raises(
        SettingsError, match="REWARDQ_BROKER_URL is a Sentinel URL: set REWARDQ_SENTINEL_MASTER"
    ):
        Settings.from_env({"REWARDQ_BROKER_URL": URL})
    with pytest.raises(SettingsError, match="REWARDQ_RESULT_BACKEND is a Sentinel URL"):
        Settings.from_env({}, broker_url="redis://localhost", result_backend=URL)


def test_the_environment_names_the_master_and_the_sentinels_password() -> None:
    read = Settings.from_env(
        {
            "REWARDQ_BROKER_URL": URL,
            "REWARDQ_SENTINEL_MASTER": "mymaster",
            "REWARDQ_SENTINEL_PASSWORD": "s3cret",
            "REWARDQ_SENTINEL_TLS": "yes",
        }
    )
    assert (read.sentinel_master, read.sentinel_password, read.sentinel_tls) == ("mymaster", "s3cret", True)
    assert "s3cret" not in repr(read)


def test_the_url_lists_the_sentinels_and_the_masters_database_and_password() -> None:
    assert sentinels(URL) == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)]
    assert master_options(URL) == {"db": 2, "password": "pw"}


def test_celery_gets_the_master_name_and_sentinel_options_for_broker_and_backend() -> None:
    config = celery_config(settings(sentinel_password="s3cret"))
    for options in (config["broker_transport_options"], config["result_backend_transport_options"]):
        assert options["master_name"] == "mymaster"
        assert options["sentinel_kwargs"] == {"password": "s3cret"}
    assert "broker_use_ssl" not in config
    plain = celery_config(Settings.from_env({}, broker_url="redis://localhost:6379/0"))
    assert "master_name" not in plain["broker_transport_options"]


def test_sentinel_tls_covers_the_sentinels_and_the_master(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    config = celery_config(settings(sentinel_tls=True, redis_ca_certs=ca))
    assert config["broker_use_ssl"]["ssl_ca_certs"] == str(ca)
    assert config["redis_backend_use_ssl"]["ssl_ca_certs"] == str(ca)
    assert config["broker_transport_options"]["sentinel_kwargs"]["ssl"] is True
    client = redis_client(settings(sentinel_tls=True, redis_ca_certs=ca))
    assert client.connection_pool.connection_class is SentinelManagedSSLConnection


def test_plain_clients_ask_the_sentinels_for_the_master() -> None:
    client = redis_client(settings(), socket_timeout=2.0)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["password"] == "pw" and pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["socket_timeout"] == 2.0


def test_workers_consume_a_sentinel_broker_through_their_own_sentinel_transport() -> None:
    assert worker_transport(URL) == "rewardq-sentinel"
    assert worker_transport("redis://localhost:6379/0") == "rewardq-redis"


def test_a_plain_client_of_a_sentinel_url_needs_the_master_name() -> None:
    plain = Settings.from_env({}, broker_url="redis://localhost:6379/0")
    with pytest.raises(SettingsError, match="needs REWARDQ_SENTINEL_MASTER"):
        redis_client(plain, URL)
