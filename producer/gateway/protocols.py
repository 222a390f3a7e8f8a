"""The foreign protocols' routes: OpenRLHF's ``/get_reward``, slime's ``/slime`` and vLLM's ``/classify``.

Each route scores what the gateway config's ``[gateway.protocols.<name>]`` table says: its rewards and
weights, under its run id. A table named ``openrlhf``, ``slime`` or ``verl`` serves that protocol's
route; a table with another name sets ``protocol`` and is picked with ``?route=<name>``, so that one
gateway serves several runs. Every route takes the core's key (401), checks the key's scope against
the table's run id and rewards (403) and holds an in-flight slot; a malformed body is a 422 naming the
field, with nothing enqueued. Requests are coalesced per table (:mod:`rewardq.integrations.coalesce`):
concurrent per-sample calls share one submission, and each gets its own scores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rewardq.catalog import check_weights
from rewardq.gateway.auth import Admitted, Caller
from rewardq.gateway.native import ERRORS
from rewardq.gateway.shapes import (
    ClassificationData,
    ClassificationResponse,
    ClassifyRequest,
    OpenRLHFAnswer,
    OpenRLHFRequest,
    Row,
    SlimeRequest,
)
from rewardq.gateway.state import Gateway
from rewardq.integrations.coalesce import DEFAULT_WINDOW_MS, Coalescer, Slot
from rewardq.results import ScoreResult
from rewardq.samples import to_samples
from rewardq.wire.errors import ConfigError, InvalidInputError, RewardqError
from rewardq.wire.schema import MAX_RUN_ID, id_problem

# A route's batch carries many requests, so its one wait may read the batch's state more often than a
# native request's wait does (each read is one Redis read per chunk). A batch closes at MAX_ROWS rows: a
# request that large (an OpenRLHF shard) goes without waiting for the window.
LAST_PAUSE_S = 0.005
MAX_ROWS = 256

Protocol = Literal["openrlhf", "slime", "verl"]
PROTOCOLS: tuple[Protocol, ...] = ("openrlhf", "slime", "verl")
# How a row's fields are named in each protocol's body, for the problems a request gets back ("": the
# whole sample, e.g. one over REWARDQ_MAX_RECORD_BYTES).
FIELDS: dict[Protocol, dict[str, str]] = {
    "openrlhf": {"": "query", "completion": "query", "prompt": "prompts", "label": "labels"},
    "slime": {"": "body", "completion": "response", "prompt": "prompt", "label": "label"},
    "verl": {"": "input", "completion": "input", "prompt": "messages", "messages": "messages"},
}


class RouteConfig(BaseModel):
    """One ``[gateway.protocols.<name>]`` table.

    ``rewards``: names and weights (``{accuracy = 1.0, format = 0.5}``) or names (weight 1);
    ``run_id``: the run the route scores under; ``missing``: the value answered for a sample with no
    score (default None: JSON null, never a silent 0.0); ``label_field``: the row field a label goes to
    (``solution``, as the rewards read it); ``answer`` (slime): ``number`` (the weighted total) or
    ``dict`` (``reward``: the total, and each reward's value; slime's ``--reward-key reward``);
    ``window_ms``: how long the coalescer waits for more calls; ``timeout``: seconds a batch waits
    for its scores (default REWARDQ_TIMEOUT; at most the gateway's ``max_timeout``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Protocol
    rewards: dict[str, float] | list[str] = Field(min_length=1)
    run_id: str = Field(min_length=1, max_length=MAX_RUN_ID)
    missing: float | None = Field(default=None, allow_inf_nan=False)
    label_field: str = Field(default="solution", min_length=1)
    answer: Literal["number", "dict"] = "number"
    window_ms: float = Field(default=DEFAULT_WINDOW_MS, ge=0, le=1000)
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _answer_is_slime(self) -> RouteConfig:
        if self.answer != "number" and self.protocol != "slime":
            raise ValueError("answer applies to the slime protocol only")
        return self


class Route:
    """A configured table: its weights, run id and coalescer.

    Each request's key is checked against the table first; the coalescer's thread then submits and
    waits for each batch through the core's :class:`Gateway` (its client and lock), off the event loop.
    """

    def __init__(self, name: str, config: RouteConfig, gateway: Gateway) -> None:
        self.name = name
        self.config = config
        self.protocol: Protocol = config.protocol
        self.gateway = gateway
        self.weights = check_weights(config.rewards, gateway.client.known_rewards)
        if (problem := id_problem(config.run_id, MAX_RUN_ID)) is not None:
            raise ValueError(f"run_id: {problem}")
        window = config.window_ms / 1000
        self._coalescer = Coalescer(self._score, window, max_rows=MAX_ROWS, name=f"rewardq-route-{name}")

    def check(self, rows: list[Row]) -> None:
        """422 naming the protocol's field when a row is invalid: a request's bad row must not fail the
        other requests coalesced with it (``submit`` checks the batch again)."""
        try:
            to_samples(rows, max_record_bytes=self.gateway.client.settings.max_record_bytes)
        except InvalidInputError as e:
            names = dict(FIELDS[self.protocol])
            if "label" in names:
                names[self.config.label_field] = names["label"]
            detail = []
            for p in e.problems:
                field = names.get(p.field.split(".", 1)[0].split("[", 1)[0], p.field)
                at = [p.index] if p.index is not None and self.protocol != "slime" else []
                name = f"{field}[{p.index}]" if at else field
                detail.append(
                    {"type": "invalid_input", "loc": ["body", field, *at], "msg": f"{name}: {p.message}"}
                )
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail) from None

    async def score(self, rows: list[Row]) -> Slot:
        """These rows' share of a coalesced batch (a batch that fails raises here, for the app's error
        answers)."""
        return await asyncio.wrap_future(self._coalescer.submit(rows))

    def _score(self, rows: list[Mapping[str, Any]]) -> ScoreResult:
        """In a coalescer's thread: one batch through the gateway's client."""
        timeout = self.gateway.timeout(self.config.timeout)
        return self.gateway.produce(
            rows, self.weights, run_id=self.config.run_id, timeout=timeout, last_pause=LAST_PAUSE_S
        )

    def value(self, value: float | None) -> float | None:
        return self.config.missing if value is None else value

    def close(self) -> None:
        self._coalescer.close()


class Protocols:
    """The configured routes, built (and checked) from the gateway config's raw ``protocols`` table."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes = dict(routes)

    @classmethod
    def build(cls, tables: Mapping[str, Mapping[str, Any]], gateway: Gateway) -> Protocols:
        """ConfigError naming ``gateway.protocols.<name>.<field>`` for a table that does not hold."""
        routes: dict[str, Route] = {}
        for name, table in tables.items():
            where = f"gateway.protocols.{name}"
            raw = dict(table)
            if name in PROTOCOLS:
                raw.setdefault("protocol", name)
            elif "protocol" not in raw:
                raise ConfigError(f"{where}.protocol: missing (one of {', '.join(PROTOCOLS)})")
            try:
                routes[name] = Route(name, RouteConfig.model_validate(raw), gateway)
            except ValidationError as e:
                problems = "; ".join(
                    f"{where}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                    for err in e.errors(include_url=False, include_input=False)
                )
                raise ConfigError(problems) from None
            except (ValueError, RewardqError) as e:
                raise ConfigError(f"{where}: {e}") from e
        return cls(routes)

    def route(self, name: str, protocol: Protocol) -> Route:
        """The table ``name`` if it serves ``protocol``; 404 otherwise."""
        route = self.routes.get(name)
        if route is None or route.protocol != protocol:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no [gateway.protocols.{name}] table serves the {protocol} route"
            )
        return route

    def close(self) -> None:
        for route in self.routes.values():
            route.close()


router = APIRouter(tags=["protocols"])
RESPONSES = {**ERRORS, 404: {"description": "No [gateway.protocols] table of that name serves this route."}}


def _route_query(default: str) -> Any:
    return Query(default, description="The [gateway.protocols.<route>] table to score with.", max_length=64)


Body: TypeAlias = OpenRLHFRequest | SlimeRequest | ClassifyRequest


async def _scored(
    request: Request, caller: Caller, name: str, protocol: Protocol, body: Body
) -> tuple[Route, Slot]:
    """The table's route and this request's scores, once the key may use the table."""
    route = request.app.state.protocols.route(name, protocol)
    caller.authorize(route.config.run_id, route.weights)
    rows = body.rows(route.config.label_field)
    route.check(rows)
    return route, await route.score(rows)


@router.post("/get_reward", response_model=OpenRLHFAnswer, responses=RESPONSES)
async def get_reward(
    body: OpenRLHFRequest, request: Request, caller: Admitted, route: str = _route_query("openrlhf")
) -> OpenRLHFAnswer:
    """OpenRLHF's remote reward model (``--reward.remote_url``; ``--remote_rm_url`` before 0.9.1)."""
    found, slot = await _scored(request, caller, route, "openrlhf", body)
    totals = [found.value(t) for t in slot.totals]
    logs = {name: [found.value(slot.values(i)[name]) for i in range(slot.size)] for name in found.weights}
    return OpenRLHFAnswer(rewards=totals, scores=totals, extra_logs=logs)


@router.post("/slime", response_model=float | dict[str, float | None] | None, responses=RESPONSES)
async def slime(
    body: SlimeRequest, request: Request, caller: Admitted, route: str = _route_query("slime")
) -> float | dict[str, float | None] | None:
    """slime's ``--rm-type remote_rm --rm-url``: one sample; the weighted total, or with ``answer =
    "dict"`` a dict (``reward`` and each reward's value) for ``--reward-key reward``."""
    found, slot = await _scored(request, caller, route, "slime", body)
    total = found.value(slot.totals[0])
    if found.config.answer == "number":
        return total
    return {"reward": total} | {name: found.value(v) for name, v in slot.values(0).items()}


@router.post("/classify", response_model=ClassificationResponse, responses=RESPONSES)
async def classify(
    body: ClassifyRequest, request: Request, caller: Admitted, route: str = _route_query("verl")
) -> ClassificationResponse:
    """vLLM's ``/classify`` as verl's reward loop calls it: ``data[i].probs`` is ``[total]``."""
    found, slot = await _scored(request, caller, route, "verl", body)
    data = [
        ClassificationData(index=i, label=None, probs=[found.value(t)], num_classes=1)
        for i, t in enumerate(slot.totals)
    ]
    return ClassificationResponse(model=body.model or found.name, data=data)
