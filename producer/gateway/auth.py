"""Who is calling: the API key (``Authorization: Bearer <key>``, ``X-API-Key: <key>``, or the password of
Basic credentials), what it may score, and its limits.

``Authenticated`` (``Depends(authenticated)``) gives the :class:`Caller` (401 without a valid key, 429
over its rate); ``Admitted`` also holds one of its in-flight slots for the request (429 when none is
free).
A route then calls ``caller.authorize(run_id, rewards)`` (403 out of scope) before it produces anything.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import (
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from starlette.requests import HTTPConnection

from rewardq.gateway.config import ANY_REWARD, KeyConfig, hash_key
from rewardq.gateway.limits import InFlightLimit, RateLimit, TooManyRequests

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")


# Trainers whose code sends no headers (OpenRLHF, slime, verl) take the key in the URL's userinfo
# (http://rq:KEY@host/...), which their HTTP clients send as Basic credentials: the password is the key.
class _Basic(HTTPBasic):
    """Basic credentials, or None: malformed ones are no key (401 as any other), not HTTPBasic's error."""

    async def __call__(  # type: ignore[override]  # HTTPBasic narrows HTTPBase's answer the same way
        self, request: HTTPConnection
    ) -> HTTPBasicCredentials | None:
        try:
            return await super().__call__(request)
        except HTTPException:
            return None


_basic = _Basic(auto_error=False, description="The API key as the password (any user name).")


class Caller:
    """An authenticated key: its name (what logs and the batches' owners record), scope and limits."""

    def __init__(self, key: KeyConfig) -> None:
        self.key = key
        self.name = key.name
        self._rate = RateLimit(key.rate, key.burst) if key.rate is not None else None
        self._in_flight = InFlightLimit(key.in_flight) if key.in_flight is not None else None

    def may_score(self, run_id: str) -> bool:
        return any(run_id.startswith(prefix) for prefix in self.key.runs)

    def may_call(self, reward: str) -> bool:
        return ANY_REWARD in self.key.rewards or reward in self.key.rewards

    def authorize(self, run_id: str, rewards: Iterable[str]) -> None:
        """Raise 403 unless this key may score ``run_id`` with each of ``rewards``."""
        if not isinstance(run_id, str) or not self.may_score(run_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this key may not score that run id")
        refused = sorted({str(r) for r in rewards if not self.may_call(str(r))})
        if refused:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this key may not call reward(s): {', '.join(refused)}"
            )

    def admit(self) -> None:
        """Count one request against the key's rate: 429 with Retry-After when it is over."""
        if self._rate is not None and (wait := self._rate.take()) > 0:
            raise TooManyRequests("over this key's request rate", wait)

    @asynccontextmanager
    async def in_flight(self) -> AsyncIterator[None]:
        """Hold one of the key's in-flight slots while the block runs: 429 when none is free."""
        if self._in_flight is None:
            yield
            return
        if not self._in_flight.enter():
            raise TooManyRequests(f"this key has {self._in_flight.limit} requests in flight already", 1.0)
        try:
            yield
        finally:
            self._in_flight.leave()


class Callers:
    """The configured keys, looked up by the hash of a presented key (compared in constant time)."""

    def __init__(self, keys: Iterable[KeyConfig]) -> None:
        self._by_hash = [(key.hash.encode(), Caller(key)) for key in keys]

    def find(self, presented: str | None) -> Caller | None:
        if not presented:
            return None
        digest = hash_key(presented).encode()
        found = None
        for stored, caller in self._by_hash:  # every key is compared: the time does not tell which matched
            if hmac.compare_digest(stored, digest):
                found = caller
        return found


def presented_key(
    bearer: HTTPAuthorizationCredentials | None, header: str | None, basic: HTTPBasicCredentials | None = None
) -> str | None:
    """The key a request presents: a bearer token, else the X-API-Key header, else a Basic password."""
    if bearer is not None:
        return bearer.credentials
    return header if header is not None or basic is None else basic.password


async def authenticated(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
    basic: Annotated[HTTPBasicCredentials | None, Security(_basic)],
) -> Caller:
    """The calling key: 401 without a valid one, 429 over its rate."""
    caller = request.app.state.gateway.callers.find(presented_key(bearer, header, basic))
    if caller is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "a valid API key is needed", headers={"WWW-Authenticate": "Bearer"}
        )
    request.state.caller = caller.name  # for the request's log line
    caller.admit()
    return caller


async def admitted(caller: Annotated[Caller, Depends(authenticated)]) -> AsyncIterator[Caller]:
    """:func:`authenticated`, holding one of the key's in-flight slots for the request."""
    async with caller.in_flight():
        yield caller


# What routes declare. The slot is given back when the route returns, before the answer is sent: a
# caller that sends its next request on reading the answer finds it free.
Authenticated = Annotated[Caller, Depends(authenticated)]
Admitted = Annotated[Caller, Depends(admitted, scope="function")]
