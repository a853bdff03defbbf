"""The FastAPI side of API keys: a dependency per scope that also applies the rate limit."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, HTTPException, Request

from aisle.serving.security import Caller, Keys, RateLimiter, presented_key


def require(scope: str) -> Any:
    """A dependency admitting callers whose key has ``scope`` (anyone in development mode),
    within their rate limit."""

    async def check(request: Request) -> Caller:
        # headers read here, not declared as parameters: FastAPI validates each declared
        # parameter on every request, a cost on the hottest path for two plain strings
        headers = request.headers
        keys: Keys = request.app.state.keys
        caller = keys.identify(presented_key(headers.get("authorization"),
                                             headers.get("x-api-key")))  # fmt: skip
        if caller is None:
            raise HTTPException(401, "a valid API key is required (Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        if scope not in caller.scopes:
            raise HTTPException(403, f"the key {caller.name!r} lacks the {scope!r} scope")
        limiter: RateLimiter = request.app.state.limiter
        wait = limiter.allow(caller)
        if wait > 0:
            raise HTTPException(429, f"rate limit of {caller.per_minute} requests a minute",
                                headers={"Retry-After": str(max(1, round(wait)))})  # fmt: skip
        request.scope.setdefault("state", {})["caller"] = caller.name
        return caller

    return Depends(check)
