"""Tests for docker-compose.yml: its structure, and that every ``rewardq`` command it runs is a real one.

Docker is not needed: the file is parsed as YAML (merge keys resolved, as Compose does), and each
``rewardq …`` command is checked against the installed CLI's ``--help`` for that command path.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from itertools import takewhile
from pathlib import Path
from typing import Any

import pytest
import yaml

from rewardq.catalog import BUILTIN_REWARDS

ROOT = Path(__file__).resolve().parents[1]
BROKER_URL = "redis://redis:6379/0"
DATABASE_URL = "postgresql+psycopg://rewardq:rewardq@postgres:5432/rewardq"
GPU_WORKERS = ("worker-gpu0", "worker-gpu1")
SHARED_DEPS = {
    "redis": "service_healthy",
    "postgres": "service_healthy",
    "migrate": "service_completed_successfully",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with open(ROOT / "docker-compose.yml") as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def rewardq_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if argv(s)[:1] == ["rewardq"]}


def option(args: list[str], flag: str) -> str:
    """The value of ``--flag VALUE`` or ``--flag=VALUE`` in a command line."""
    for i, arg in enumerate(args):
        if arg == flag:
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {args}")


def depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    return list(service["deploy"]["resources"]["reservations"]["devices"])


def test_services_are_all_there(services: dict[str, dict[str, Any]]) -> None:
    expected = {"redis", "postgres", "migrate", "worker-cpu", *GPU_WORKERS, "vllm-judge", "flower"}
    assert expected <= set(services)


def test_redis_is_durable_and_never_evicts(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    args = argv(redis)

    assert redis["image"].startswith("redis:7")
    assert option(args, "--appendonly") == "yes"
    assert option(args, "--maxmemory-policy") == "noeviction"
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_stateful_and_served_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "/health" in " ".join(services["vllm-judge"]["healthcheck"]["test"])
    assert services["postgres"]["image"].startswith("postgres:16")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])


def test_rewardq_services_share_settings_and_wait_for_their_dependencies(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    ours = rewardq_services(services)

    assert set(ours) >= {"migrate", "worker-cpu", *GPU_WORKERS}
    for name, service in ours.items():
        assert service["image"] == compose["x-rewardq"]["image"], name
        assert service["environment"]["REWARDQ_BROKER_URL"] == BROKER_URL, name
        assert service["environment"]["REWARDQ_DATABASE_URL"] == DATABASE_URL, name
        if name != "migrate":
            assert depends(service).items() >= SHARED_DEPS.items(), name
    assert depends(services["migrate"]) == {"postgres": "service_healthy"}
    assert services["migrate"]["restart"] == "no"
    assert argv(services["migrate"]) == ["rewardq", "db", "upgrade"]


def test_cpu_worker_serves_the_builtin_rule_rewards(services: dict[str, dict[str, Any]]) -> None:
    args = argv(services["worker-cpu"])

    assert args[:2] == ["rewardq", "worker"]
    assert set(option(args, "--rewards").split(",")) == set(BUILTIN_REWARDS)
    assert "--gpu" not in args
    assert "deploy" not in services["worker-cpu"]


def test_each_gpu_worker_reserves_its_own_gpu_and_pins_it(services: dict[str, dict[str, Any]]) -> None:
    """The container sees only its reserved GPU, renumbered as device 0, so ``--gpu 0`` pins it.

    (NVIDIA's runtime numbers a container's GPUs from 0 whatever their host index; pinning the host
    index, CUDA_VISIBLE_DEVICES=1 in a one-GPU container, would hide the only GPU.)
    """
    reserved = []
    for name in GPU_WORKERS:
        service = services[name]
        args = argv(service)
        (device,) = gpu_devices(service)
        assert device["driver"] == "nvidia", name
        assert "gpu" in device["capabilities"], name
        (device_id,) = device["device_ids"]
        assert name == f"worker-gpu{device_id}"
        reserved.append(device_id)
        assert option(args, "--rewards") == "rm", name
        assert option(args, "--gpu") == "0", name
        assert service["environment"]["REWARDQ_REWARDS"] == "/config/rewards.toml", name
        assert any(v["target"] == "/config/rewards.toml" for v in service["volumes"] if isinstance(v, dict))
    assert len(set(reserved)) == len(GPU_WORKERS)


def test_vllm_judge_serves_on_a_gpu(services: dict[str, dict[str, Any]]) -> None:
    judge = services["vllm-judge"]

    assert "vllm/vllm-openai" in judge["image"]
    assert "--model" in argv(judge)
    (device,) = gpu_devices(judge)
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]


def test_flower_watches_the_broker(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    args = argv(flower)

    assert "flower" in args
    assert f"--broker={BROKER_URL}" in args or option(args, "--broker") == BROKER_URL
    assert any(str(p).endswith(":5555") for p in flower["ports"])
    assert depends(flower) == {"redis": "service_healthy"}


@cache
def cli_help(*path: str) -> str:
    """``rewardq PATH… --help``, from the executable installed next to this Python."""
    exe = Path(sys.executable).with_name("rewardq")
    if not exe.exists():
        pytest.fail(f"the rewardq executable is not installed at {exe} (pip install -e .)")
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(
        [str(exe), *path, "--help"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, f"`rewardq {' '.join(path)} --help` failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_every_rewardq_command_and_flag_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in rewardq_services(services).items():
        args = argv(service)[1:]
        path = tuple(takewhile(lambda a: not a.startswith("-"), args))  # e.g. ("db", "upgrade")
        known = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", cli_help(*path)))
        used = {a.split("=", 1)[0] for a in args if a.startswith("--")}
        assert used <= known, f"{name}: `rewardq {' '.join(path)}` has no {sorted(used - known)}"


def test_the_mounted_rewards_file_configures_every_reward_the_workers_serve(
    services: dict[str, dict[str, Any]],
) -> None:
    """The example ./rewards.toml loads and validates (its model and judge server are not here, so
    this checks the options, not set-up; set-up is tested with each kind)."""
    from rewardq.workers.rewards.config import RewardsConfig
    from rewardq.workers.rewards.models.reward_model import RewardModelOptions

    config = RewardsConfig.load(ROOT / "rewards.toml")
    for name in GPU_WORKERS:
        for reward in option(argv(services[name]), "--rewards").split(","):
            spec = config.spec(reward)
            assert spec.kind == "reward_model", reward
            assert config.kinds.resolve(spec.kind).holds_model
            assert isinstance(spec.options, RewardModelOptions)
            assert spec.options.dtype == "auto"
            assert spec.options.max_length is not None
            assert spec.options.max_length <= spec.options.token_budget
    judge = config.spec(option(argv(services["worker-judge"]), "--rewards"))
    assert judge.kind == "judge"
    assert "vllm-judge:8000" in str(judge.options.model_dump())
    code = config.spec(option(argv(services["worker-code"]), "--rewards"))
    assert code.kind == "code"
    # bwrap needs the user namespaces Docker's default profiles forbid (Sandbox.find says so at start)
    assert {"seccomp=unconfined", "apparmor=unconfined"} <= set(services["worker-code"]["security_opt"])


def test_the_gateway_serves_beside_the_workers_with_its_config(services: dict[str, dict[str, Any]]) -> None:
    from rewardq.gateway.config import GatewayConfig

    gateway = services["gateway"]
    args = argv(gateway)
    assert args[:2] == ["rewardq", "serve"]
    assert option(args, "--config") == "/config/gateway.toml"
    assert option(args, "--rewards") == gateway["environment"]["REWARDQ_REWARDS"] == "/config/rewards.toml"
    assert option(args, "--host") == "0.0.0.0"
    assert any(str(p).endswith(f":{option(args, '--port')}") for p in gateway["ports"])
    mounts = {v["target"]: v for v in gateway["volumes"] if isinstance(v, dict)}
    assert mounts["/config/gateway.toml"]["read_only"] and "/config/rewards.toml" in mounts
    assert "/v1/health" in " ".join(gateway["healthcheck"]["test"])
    example = GatewayConfig.load(ROOT / "gateway.toml")  # the example loads, with no key in it
    assert example.keys == []


def mounted(service: dict[str, Any], target: str) -> Path:
    """The repo file a service mounts at ``target`` (a short ``./SOURCE:TARGET[:ro]`` volume)."""
    for volume in service["volumes"]:
        source, _, rest = str(volume).partition(":")
        if rest.split(":")[0] == target and source.startswith("./"):
            return ROOT / source
    raise AssertionError(f"nothing mounted at {target}")


def test_every_worker_serves_metrics_and_prometheus_scrapes_them_and_the_exporter(
    services: dict[str, dict[str, Any]],
) -> None:
    workers = {n: s for n, s in rewardq_services(services).items() if argv(s)[1] == "worker"}
    ports = {name: int(option(argv(s), "--metrics-port")) for name, s in workers.items()}
    exporter = argv(services["exporter"])
    assert exporter[:2] == ["rewardq", "status"]
    config_file = mounted(services["prometheus"], "/etc/prometheus/prometheus.yml")
    jobs = {job["job_name"]: job for job in yaml.safe_load(config_file.read_text())["scrape_configs"]}
    scraped = {(name, sd["port"]) for sd in jobs["rewardq-workers"]["dns_sd_configs"] for name in sd["names"]}
    assert scraped == set(ports.items())
    (static,) = jobs["rewardq-broker"]["static_configs"]
    assert static["targets"] == [f"exporter:{option(exporter, '--metrics-port')}"]


def test_grafana_is_provisioned_with_prometheus_and_the_rewardq_dashboard(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    sources = mounted(grafana, "/etc/grafana/provisioning/datasources/rewardq.yml")
    (source,) = yaml.safe_load(sources.read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = mounted(grafana, "/etc/grafana/provisioning/dashboards/rewardq.yml")
    (provider,) = yaml.safe_load(providers.read_text())["providers"]
    dashboard = mounted(grafana, f"{provider['options']['path']}/rewardq.json")
    assert dashboard == ROOT / "docs" / "grafana" / "rewardq.json"
    panels = [p for p in json.loads(dashboard.read_text())["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"]["uid"] == source["uid"] for p in panels)
    assert any(str(p).endswith(":9090") for p in services["prometheus"]["ports"])


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("no `docker compose` here: test_compose_spec.py checks the files against its schema")
    done = subprocess.run(
        [docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_sentinel_override_points_every_rewardq_service_at_three_sentinels(
    services: dict[str, dict[str, Any]],
) -> None:
    """docker-compose.sentinel.yml (docs/deploy.md): a replica of ``redis``, three sentinels with a quorum
    of 2 monitoring it under the name the rewardq services are given, and every rewardq service of the
    base file switched to their ``sentinel://`` URL and waiting for them."""
    with open(ROOT / "docker-compose.sentinel.yml") as f:
        extra = dict(yaml.safe_load(f)["services"])
    sentinel_names = [f"sentinel-{i}" for i in (1, 2, 3)]
    replica = argv(extra["redis-replica"])
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
    master = extra["migrate"]["environment"]["REWARDQ_SENTINEL_MASTER"]
    for name in rewardq_services(services):
        env = extra[name]["environment"]
        urls = env["REWARDQ_BROKER_URL"].split(";")
        assert urls == [f"sentinel://{s}:26379/0" for s in sentinel_names], name
        assert env["REWARDQ_SENTINEL_MASTER"] == master, name
        assert depends(extra[name]) == dict.fromkeys(sentinel_names, "service_healthy"), name
    for name in sentinel_names:
        script = argv(extra[name])[-1]
        assert f"sentinel monitor {master} redis 6379 2" in script.splitlines()
        assert script.splitlines()[-1] == "exec redis-server /tmp/sentinel.conf --sentinel"
