"""docker-compose.yml, alone and with docker-compose.sentinel.yml, loaded as ``docker compose config``
loads it: each file's variables interpolated (an empty environment, so every default applies), the files
merged in order, the result validated against the Compose Specification's JSON schema, then checked for
what compose-go's ``checkConsistency`` refuses (a service without image or build, an undefined service,
network, volume, secret or config, a healthcheck test that is not CMD, CMD-SHELL or NONE) or fails to
decode (a duration Go's ``time.ParseDuration`` cannot read).

The schema, ``tests/vendored/compose-spec.json``, is the one ``docker compose`` embeds, vendored
unchanged from compose-spec/compose-go (``schema/compose-spec.json`` at commit
e70e961c3a3acebf0800b882f1afb3dbf1fb74a2, v2.13.0-6). Docker is not needed (none here); where
``docker compose`` exists, tests/test_compose.py also runs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "tests" / "vendored" / "compose-spec.json"
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^{}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|(?P<invalid>))"
)
_DURATION = re.compile(r"^[-+]?(?:0|(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+)$")  # Go's
_HEALTH_DURATIONS = ("interval", "timeout", "start_period", "start_interval")
_REPLACED = {"command", "entrypoint", "test"}  # sequences an override replaces; others it extends
_HEALTH_TESTS = {"CMD", "CMD-SHELL", "NONE"}


class ComposeError(ValueError):
    """What ``docker compose config`` would refuse, in one line."""


def interpolate(value: Any, env: Mapping[str, str], where: str = "") -> Any:
    """``value`` with compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR:+other}`` (and their forms without ``:``) and ``$$`` substituted in every
    string value (keys are left alone, as compose leaves them)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{where}.{k}".lstrip(".")) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        if m["invalid"] is not None:
            raise ComposeError(f"{where}: invalid interpolation format in {value!r}")
        name, op, arg = m["braced"] or m["bare"], m["op"] or "", m["arg"] or ""
        is_set = name in env and (not op.startswith(":") or env[name] != "")
        if op.endswith("-"):
            return env[name] if is_set else arg
        if op.endswith("?"):
            if not is_set:
                raise ComposeError(f"{where}: required variable {name} is missing a value: {arg}")
            return env[name]
        if op.endswith("+"):
            return arg if is_set else ""
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def merge(base: Any, override: Any, key: str = "") -> Any:
    """``override`` merged onto ``base`` as compose merges files: mappings key by key, sequences
    extended without repeats (``command``, ``entrypoint`` and a healthcheck's ``test`` replaced),
    anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for k, v in override.items():
            merged[k] = merge(base[k], v, k) if k in base else v
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        return base + [v for v in override if v not in base]
    return override


def validate(doc: dict[str, Any]) -> None:
    """Raise ComposeError naming the first place where ``doc`` breaks the schema, else the first
    inconsistency compose-go refuses."""
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        raise ComposeError(f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}")
    _check_consistency(doc)


def _check_consistency(doc: dict[str, Any]) -> None:
    services = doc.get("services") or {}
    declared = {kind: set(doc.get(kind) or {}) for kind in ("networks", "volumes", "secrets", "configs")}
    declared["networks"].add("default")
    for name, service in services.items():
        if "image" not in service and "build" not in service:
            raise ComposeError(f"service {name!r} has neither an image nor a build context specified")
        for other in service.get("depends_on") or {}:
            if other not in services:
                raise ComposeError(f"service {name!r} depends on undefined service {other!r}")
        mode = str(service.get("network_mode", ""))
        if mode.startswith("service:") and mode.removeprefix("service:") not in services:
            raise ComposeError(f"service {name!r}: no service {mode!r} for network_mode")
        for network in service.get("networks") or {}:
            if network not in declared["networks"]:
                raise ComposeError(f"service {name!r} refers to undefined network {network!r}")
        for source in _named_volumes(service.get("volumes") or []):
            if source not in declared["volumes"]:
                raise ComposeError(f"service {name!r} refers to undefined volume {source!r}")
        for kind in ("secrets", "configs"):
            for ref in service.get(kind) or []:
                source = ref if isinstance(ref, str) else ref.get("source")
                if source not in declared[kind]:
                    raise ComposeError(f"service {name!r} refers to undefined {kind[:-1]} {source!r}")
        health = service.get("healthcheck") or {}
        test = health.get("test")
        if isinstance(test, list) and (not test or test[0] not in _HEALTH_TESTS):
            raise ComposeError(f"service {name!r}: healthcheck.test must start with CMD, CMD-SHELL or NONE")
        durations = {f"healthcheck.{k}": health.get(k) for k in _HEALTH_DURATIONS}
        for field, value in {**durations, "stop_grace_period": service.get("stop_grace_period")}.items():
            if value is not None and not _DURATION.match(str(value)):
                raise ComposeError(f"service {name!r}: {field} {value!r} is not a duration")


def _named_volumes(volumes: list[Any]) -> list[str]:
    """The named volumes among a service's mounts (not bind mounts or anonymous volumes)."""
    named = []
    for volume in volumes:
        if isinstance(volume, str):
            source, sep, _ = volume.partition(":")
            if sep and not source.startswith(("/", ".", "~", "$")):
                named.append(source)
        elif volume.get("type", "volume") == "volume" and volume.get("source"):
            named.append(volume["source"])
    return named


def load(*files: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The files, interpolated and merged in order, as ``docker compose -f … -f … config`` reads them."""
    doc: dict[str, Any] = {}
    for name in files:
        raw = yaml.safe_load((ROOT / name).read_text())
        doc = merge(doc, interpolate(raw, env or {}))
    return doc


@pytest.mark.parametrize(
    "files", [("docker-compose.yml",), ("docker-compose.yml", "docker-compose.sentinel.yml")], ids=" + ".join
)
def test_the_compose_files_follow_the_compose_specification(files: tuple[str, ...]) -> None:
    doc = load(*files)
    validate(doc)
    assert doc["services"]["gateway"]["ports"]  # the defaults were interpolated, not left as ${…}
    assert "${" not in json.dumps(doc)


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ({"services": {"redis": {"restart_policy": "always"}}}, "redis: 'restart_policy' does not match"),
        (
            {"services": {"redis": {"healthcheck": {"interval": "5 seconds"}}}},
            "'5 seconds' is not a duration",
        ),
        ({"services": {"redis": {"depends_on": {"nowhere": {"condition": "service_started"}}}}}, "nowhere"),
        ({"services": {"redis": {"volumes": ["missing-data:/data"]}}}, "undefined volume 'missing-data'"),
        ({"services": {"extra": {"command": ["true"]}}}, "neither an image nor a build"),
        ({"services": {"redis": {"healthcheck": {"test": ["redis-cli", "ping"]}}}}, "CMD, CMD-SHELL or NONE"),
    ],
)
def test_the_check_refuses_what_docker_compose_refuses(change: dict[str, Any], refused: str) -> None:
    """The same check on the compose file with one defect added: it must not pass what compose refuses."""
    with pytest.raises(ComposeError, match=re.escape(refused)):
        validate(merge(load("docker-compose.yml"), change))


def test_interpolation_follows_compose() -> None:
    env = {"SET": "x", "EMPTY": ""}
    text = "$SET ${SET} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${SET:+alt} ${EMPTY+alt} $$SET"
    assert interpolate({"k": text}, env) == {"k": "x x d d  alt alt $SET"}
    with pytest.raises(ComposeError, match="required variable UNSET"):
        interpolate({"k": "${UNSET:?say it}"}, env)
    with pytest.raises(ComposeError, match="invalid interpolation format"):
        interpolate({"k": "cost: $5"}, env)
