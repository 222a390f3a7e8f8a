"""The gateway's configuration: the ``[gateway]`` table of a TOML file (``rewardq serve --config``).

Each client key is stored as a hash only (``sha256:<hex>`` of the key, from ``rewardq serve hash-key``):
keys are 256-bit random tokens, so a fast hash is as safe as a slow one and costs nothing per request.
"""

from __future__ import annotations

import hashlib
import secrets
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rewardq.wire.errors import ConfigError

HASH_SCHEME = "sha256"
MIN_KEY_CHARS = 32  # a key hashed from the command line's input must be at least this long
ANY_REWARD = "*"


def hash_key(key: str) -> str:
    """The form a key is stored in: ``sha256:<hex digest>``."""
    return f"{HASH_SCHEME}:{hashlib.sha256(key.encode()).hexdigest()}"


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return f"rq_{secrets.token_urlsafe(32)}"


class KeyConfig(BaseModel):
    """One client key: its name (in logs, never the key), its hash, and what it may do.

    ``runs``: run-id prefixes the key may score under (``""`` allows every run); ``rewards``: reward
    names it may call (``"*"``: every reward served); ``rate``: requests per second, with bursts up to
    ``burst`` (None: unlimited); ``in_flight``: requests it may have running at once (None: unlimited).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    hash: str = Field(pattern=rf"^{HASH_SCHEME}:[0-9a-f]{{64}}$")
    runs: list[str] = Field(min_length=1)
    rewards: list[str] = Field(min_length=1)
    rate: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    burst: int | None = Field(default=None, ge=1)
    in_flight: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _burst_needs_rate(self) -> KeyConfig:
        if self.burst is not None and self.rate is None:
            raise ValueError("burst needs a rate")
        return self


class GatewayConfig(BaseModel):
    """The ``[gateway]`` table.

    ``keys``: the clients (``[[gateway.keys]]``); ``protocols``: the foreign protocols' routes
    (``[gateway.protocols.<name>]``), kept raw here and validated by rewardq.gateway.protocols;
    ``max_body_bytes``: the largest request body (413 beyond it; each sample is also held to
    REWARDQ_MAX_RECORD_BYTES); ``max_timeout``: the longest wait a request may ask for, in seconds;
    ``tls_certfile``/``tls_keyfile``: serve HTTPS (uvicorn's options; the command line's flags win);
    ``ready_rewards``: the rewards a live worker must serve for the gateway to be ready (default: every
    reward a key names).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: list[KeyConfig] = Field(default_factory=list)
    protocols: dict[str, dict[str, Any]] = Field(default_factory=dict)
    max_body_bytes: int = Field(default=64 << 20, ge=1)
    max_timeout: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    ready_rewards: list[str] | None = None

    @field_validator("keys")
    @classmethod
    def _unique(cls, keys: list[KeyConfig]) -> list[KeyConfig]:
        for attr in ("name", "hash"):
            seen: set[str] = set()
            for key in keys:
                value = getattr(key, attr)
                if value in seen:
                    shown = key.name if attr == "name" else f"of key {key.name!r}"
                    raise ValueError(f"two keys share the {attr} {shown}")
                seen.add(value)
        return keys

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewayConfig:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("tls_certfile and tls_keyfile go together")
        return self

    def needed_rewards(self) -> list[str]:
        """The rewards readiness asks a live worker for (see ``ready_rewards``)."""
        if self.ready_rewards is not None:
            return list(self.ready_rewards)
        return sorted({r for key in self.keys for r in key.rewards if r != ANY_REWARD})

    @classmethod
    def load(cls, path: Path) -> GatewayConfig:
        """The ``[gateway]`` table of a TOML file; ConfigError naming the file and the field."""
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f).get("gateway", {})
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the gateway config: {e}") from e
        try:
            return cls.model_validate(table)
        except ValidationError as e:
            problems = "; ".join(
                f"gateway.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in e.errors(include_url=False, include_input=False)
            )
            raise ConfigError(f"{path}: {problems}") from None
