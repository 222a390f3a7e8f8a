"""Request ids: each request gets one (the caller's ``X-Request-ID`` when it is a plain token), which
is in every log line written while it runs and in the answer's ``X-Request-ID`` header; one line per
request is logged (method, path, status, time, the key's name, never the key). A failure no handler
answered becomes a 500 that names only the request id."""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

HEADER = "X-Request-ID"
_ACCEPTED = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("rewardq_request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Gives each log record a ``request_id`` attribute (``-`` outside a request), for the format."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class RequestIds:
    """The ASGI middleware (outermost) that names and logs each request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(HEADER, "")
        rid = given if _ACCEPTED.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.monotonic()
        answered = 0

        async def send_with_id(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = message["status"]
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s failed", rid)
            if not answered:
                failed = JSONResponse({"detail": f"internal error (request {rid})"}, status_code=500)
                await failed(scope, receive, send_with_id)
        finally:
            caller = scope.get("state", {}).get("caller", "-")
            log.info(
                "%s %r -> %s in %.1f ms (key %s)",
                scope["method"],
                scope["path"],
                answered or "no answer",
                1000 * (time.monotonic() - started),
                caller,
            )
            request_id.reset(token)
