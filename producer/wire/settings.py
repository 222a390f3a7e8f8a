"""Settings: plain values read once from REWARDQ_* environment variables at an entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rewardq.wire.errors import SettingsError

MAX_CHUNK_SIZE = 1_000_000
"""The most samples one task may hold (a worker refuses a task that claims more)."""

ENV_PREFIX = "REWARDQ_"
SENTINEL_SCHEME = "sentinel://"
"""A Redis reached through Sentinel (rewardq.sentinel)."""


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """Where the embedded default keeps its SQLite audit file."""
    if environ.get("REWARDQ_HOME"):
        return Path(environ["REWARDQ_HOME"]).expanduser()
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "rewardq"


@dataclass(frozen=True)
class Settings:
    """Everything rewardq can be configured with; each field is REWARDQ_<FIELD> in the environment.

    broker_url: Celery broker (``redis://…``, ``rediss://…``, or ``sentinel://h1:26379;sentinel://h2:26379``
        for a Redis behind Sentinel). None means the embedded in-process worker.
    result_backend: Celery result backend; defaults to the broker URL.
    database_url: SQLAlchemy URL of the audit store; defaults to a SQLite file under REWARDQ_HOME.
    rewards: path of the rewards config (TOML); built-in rule rewards need none.
    chunk_size: samples per task; a batch becomes one task per (chunk, reward).
    max_record_bytes: largest accepted sample, as JSON.
    timeout: seconds a client waits for a batch before the missing scores become ``timeout``.
    task_time_limit: hard limit on one task in a worker, in seconds (prefork pools enforce it).
    visibility_timeout: seconds after its worker's last heartbeat before Redis redelivers a task that
        worker held (a worker refreshes the tasks it holds every ``heartbeat`` seconds, so a running
        task is never redelivered, however long it runs; a dead worker's are within this time).
    heartbeat: seconds between a worker's heartbeats (its announcement and its tasks' refresh).
    max_deliveries: deliveries of one task before it is parked in the dead-letter queue.
    audit_retry: seconds a worker keeps retrying an audit write that fails transiently (the store is
        down) before it fails the task; the scores are kept meanwhile, not recomputed.
    serve_wait: seconds a producer waits for a live worker serving each reward before it refuses the
        batch (0: do not check).
    resend_after: seconds a chunk may be overdue before the client looks for it in the broker and,
        when no queue, worker or result holds it (lost in a broker restart), sends it again.
    result_expires: seconds results stay in the backend.
    prefetch_multiplier: tasks a worker process reserves ahead (1 for long GPU tasks).
    store_text: also store prompt and completion text in the audit store (hashes are always stored).
    cache_url: Redis URL of the result cache judges share; defaults to the broker's when it is Redis,
        in-process when embedded.
    audit_key: secret key sealing the audit's hash chain (HMAC-SHA-256); without it, plain SHA-256.
        Never printed (not in repr).
    redis_ca_certs: CA file that verifies a ``rediss://`` server (default: the system's CAs).
    redis_certfile, redis_keyfile: client certificate and key, for a Redis that requires them.
    sentinel_master: the name Sentinel knows the Redis master by; needed by a ``sentinel://`` URL.
    sentinel_password: the sentinels' own password (the master's is in the URL). Never printed.
    sentinel_tls: reach the sentinels and the master of a ``sentinel://`` URL over TLS.
    coalesce_tasks: tasks of model rewards a worker scores together at most (one flush of its buffer).
    coalesce_wait_ms: how long the first buffered task of a model reward waits for others to join it.
    """

    broker_url: str | None = None
    result_backend: str | None = None
    database_url: str = ""
    rewards: Path | None = None
    chunk_size: int = 512
    max_record_bytes: int = 1 << 20
    timeout: float = 600.0
    task_time_limit: int = 3600
    visibility_timeout: int = 60
    heartbeat: float = 5.0
    max_deliveries: int = 3
    audit_retry: float = 600.0
    serve_wait: float = 30.0
    resend_after: float = 30.0
    result_expires: int = 86400
    prefetch_multiplier: int = 1
    store_text: bool = False
    cache_url: str | None = None
    audit_key: str | None = field(default=None, repr=False)
    redis_ca_certs: Path | None = None
    redis_certfile: Path | None = None
    redis_keyfile: Path | None = None
    sentinel_master: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    sentinel_tls: bool = False
    coalesce_tasks: int = 64
    coalesce_wait_ms: float = 5.0

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{default_data_dir(os.environ) / 'audit.db'}")
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise SettingsError(
                f"REWARDQ_CHUNK_SIZE must be from 1 to {MAX_CHUNK_SIZE:,}, got {self.chunk_size}"
            )
        if self.max_record_bytes < 1:
            raise SettingsError(f"REWARDQ_MAX_RECORD_BYTES must be at least 1, got {self.max_record_bytes}")
        if self.timeout <= 0:
            raise SettingsError(f"REWARDQ_TIMEOUT must be positive, got {self.timeout}")
        if self.prefetch_multiplier < 1:
            raise SettingsError(
                f"REWARDQ_PREFETCH_MULTIPLIER must be at least 1, got {self.prefetch_multiplier}"
            )
        if self.coalesce_tasks < 1:
            raise SettingsError(f"REWARDQ_COALESCE_TASKS must be at least 1, got {self.coalesce_tasks}")
        if not self.coalesce_wait_ms > 0:
            raise SettingsError(f"REWARDQ_COALESCE_WAIT_MS must be positive, got {self.coalesce_wait_ms}")
        if not self.heartbeat > 0:
            raise SettingsError(f"REWARDQ_HEARTBEAT must be positive, got {self.heartbeat}")
        if self.visibility_timeout < 3 * self.heartbeat:
            raise SettingsError(
                f"REWARDQ_VISIBILITY_TIMEOUT ({self.visibility_timeout}s) must be at least three "
                f"REWARDQ_HEARTBEAT periods ({self.heartbeat}s), or Redis redelivers running tasks"
            )
        if self.max_deliveries < 1:
            raise SettingsError(f"REWARDQ_MAX_DELIVERIES must be at least 1, got {self.max_deliveries}")
        for name in ("broker_url", "result_backend", "cache_url"):
            if str(getattr(self, name) or "").startswith(SENTINEL_SCHEME) and not self.sentinel_master:
                raise SettingsError(f"REWARDQ_{name.upper()} is a Sentinel URL: set REWARDQ_SENTINEL_MASTER")
        for name in ("audit_retry", "serve_wait", "resend_after"):
            if getattr(self, name) < 0:
                raise SettingsError(f"REWARDQ_{name.upper()} must not be negative, got {getattr(self, name)}")

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: an in-process worker serves requests."""
        return not self.broker_url

    @property
    def chain_key(self) -> bytes | None:
        """The audit key as bytes, or None."""
        return self.audit_key.encode() if self.audit_key else None

    @property
    def backend_url(self) -> str | None:
        return self.result_backend or self.broker_url

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (CLI flags override the environment)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read REWARDQ_* variables; ``overrides`` (not None) win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = ENV_PREFIX + f.name.upper()
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(var, raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "database_url" not in values:
            values["database_url"] = f"sqlite:///{default_data_dir(env) / 'audit.db'}"
        return cls(**values)


def _parse(var: str, raw: str, type_: Any) -> Any:
    kind = str(type_)
    try:
        if kind == "bool":
            low = raw.strip().lower()
            if low in {"1", "true", "yes", "on"}:
                return True
            if low in {"0", "false", "no", "off"}:
                return False
            raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if "Path" in kind:
            return Path(raw).expanduser()
    except ValueError as e:
        raise SettingsError(f"{var}={raw!r} is not valid: {e}") from e
    return raw
