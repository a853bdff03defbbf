"""The FastAPI side of API keys: a dependency per scope that also applies the rate limit."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request

from aisle.serving.security import Caller, Keys, RateLimiter, presented_key


def require(scope: str) -> Any:
    """A dependency admitting callers whose key has ``scope`` (anyone in development mode),
    within their rate limit."""

    async def check(
        request: Request,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
        x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Caller:
        keys: Keys = request.app.state.keys
        caller = keys.identify(presented_key(authorization, x_api_key))
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
