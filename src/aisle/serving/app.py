"""The HTTP application: middleware, errors, health, metrics and the admin routes.

Every error is JSON, ``{"error": {"code", "message", "field"?, "line"?}}`` with a 4xx for
anything the caller can fix; a 500 means a bug. Log lines name the route template and the
key's name, never the path itself (it can hold a customer id) or the query string.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aisle.errors import AisleError, InputError, NotFoundError, SearchError
from aisle.serving.auth import require
from aisle.serving.routes import router
from aisle.serving.security import Keys, RateLimiter
from aisle.serving.service import Service, settle_memory

log = logging.getLogger("aisle.serving")
access = logging.getLogger("aisle.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response serialised once, fast."""
    return Response(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS), status_code=status,
                    media_type="application/json", headers=headers)  # fmt: skip


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    """The one error shape."""
    error = {"code": code, "message": message, **{k: v for k, v in extra.items() if v is not None}}
    headers = {"Retry-After": str(extra["retry_after"])} if "retry_after" in extra else None
    return json_response({"error": error}, status, headers)


class Guard:
    """Pure ASGI middleware: body size limit, latency metrics and the access log (route
    templates only)."""

    def __init__(self, app: ASGI, service: Service) -> None:
        self.app = app
        self.service = service
        self.limit = service.settings.serve.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = error_response(413, "too_large", f"the body exceeds {self.limit} bytes")
            await response(scope, receive, send)
            self._observe(scope, 413, started)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLargeError
            return message

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except _BodyTooLargeError:
            status = 413
            response = error_response(413, "too_large", f"the body exceeds {self.limit} bytes")
            await response(scope, receive, send)
        self._observe(scope, status, started)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.service.metrics.observe(template, scope["method"], status, seconds)
        if access.isEnabledFor(logging.INFO):
            caller = scope.get("state", {}).get("caller", "-")
            access.info("%s %s %d %.1fms key=%s", scope["method"], template, status,
                        seconds * 1000, caller)  # fmt: skip


class _BodyTooLargeError(Exception):
    """The body grew past the limit while it was read."""


def _field(location: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


def create_app(service: Service) -> FastAPI:
    """The application over a running service (which it closes on shutdown)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        settle_memory()
        service.start_background()
        try:
            yield
        finally:
            service.stop_background()
            service.close()

    app = FastAPI(
        title="aisle",
        version="1",
        summary="E-commerce search and recommendations that learn as shoppers shop.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.keys = Keys(service.settings.serve)
    app.state.limiter = RateLimiter()

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0] if error.errors() else {}
        return error_response(422, "invalid", str(first.get("msg", "invalid request")),
                              field=_field(first.get("loc", ())))  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> Response:
        codes = {401: "unauthorised", 403: "forbidden", 404: "not_found", 405: "not_allowed",
                 429: "rate_limited"}  # fmt: skip
        extra: dict[str, Any] = {}
        if error.headers and "Retry-After" in error.headers:
            extra["retry_after"] = error.headers["Retry-After"]
        response = error_response(error.status_code, codes.get(error.status_code, "error"),
                                  str(error.detail), **extra)  # fmt: skip
        response.headers.update(error.headers or {})  # WWW-Authenticate with a 401
        return response

    @app.exception_handler(AisleError)
    async def aisle_error(_request: Request, error: AisleError) -> Response:
        if isinstance(error, NotFoundError):
            return error_response(404, "not_found", str(error))
        if isinstance(error, InputError):
            return error_response(400, "bad_input", str(error), field=error.field,
                                  line=error.line)  # fmt: skip
        if isinstance(error, SearchError):
            return error_response(400, "bad_search", str(error))
        return error_response(400, "rejected", str(error))

    @app.exception_handler(Exception)
    async def bug(_request: Request, error: Exception) -> Response:
        log.error("unhandled %s: %s", type(error).__name__, error)
        return error_response(500, "internal", "internal error; it has been logged")

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> Response:
        """Ready when something can answer: a model or a search index."""
        live = service.live
        ready = bool(live.models) or live.engine is not None
        payload = {"status": "ready" if ready else "not ready", "models": live.versions(),
                   "search_index": live.index_version}  # fmt: skip
        return json_response(payload, 200 if ready else 503)

    @app.get("/metrics", tags=["operations"], dependencies=[require("admin")],
             response_class=Response)  # fmt: skip
    async def metrics() -> Response:
        """Prometheus text format."""
        text = service.metrics.render(service.gauges())
        return Response(text, media_type="text/plain; version=0.0.4")

    app.include_router(router)
    app.add_middleware(Guard, service=service)
    return app
