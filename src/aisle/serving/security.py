"""Who may call the service: API keys with scopes, per-key rate limits, where it may listen.

Keys come from ``[serve] api_keys`` and ``AISLE_API_KEYS`` ("name:key:scope+scope,...").
Only a SHA-256 digest of each key is kept in memory and only the key's name is ever logged.
With no key at all the service runs open (development mode) and may bind to loopback only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import threading
import time
from dataclasses import dataclass
from typing import Final

from aisle.config import ApiKeySettings, ServeSettings
from aisle.errors import ConfigError

SCOPES: Final = ("ingest", "read", "admin")
#: The shortest key accepted: anything shorter is guessable.
MIN_KEY_LENGTH: Final = 16
ENV_KEYS: Final = "AISLE_API_KEYS"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the key's name and what it may do."""

    name: str
    scopes: frozenset[str]
    per_minute: int


def parse_keys(text: str) -> list[ApiKeySettings]:
    """Keys written as "name:key:scope+scope" separated by commas."""
    keys: list[ApiKeySettings] = []
    for number, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        fields = part.split(":")
        if len(fields) != 3 or not fields[0] or not fields[1]:
            raise ConfigError(f"{ENV_KEYS} entry {number + 1}: expected name:key:scope+scope")
        scopes = [s for s in fields[2].split("+") if s]
        unknown = set(scopes) - set(SCOPES)
        if unknown or not scopes:
            raise ConfigError(
                f"{ENV_KEYS} entry {number + 1} ({fields[0]}): scopes must be among "
                f"{', '.join(SCOPES)}, got {fields[2]!r}"
            )
        keys.append(ApiKeySettings.model_validate({"name": fields[0], "key": fields[1],
                                                   "scopes": scopes}))  # fmt: skip
    return keys


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class Keys:
    """The configured keys; ``open`` when there are none."""

    def __init__(self, settings: ServeSettings, environment: str | None = None) -> None:
        given = list(settings.api_keys)
        text = os.environ.get(ENV_KEYS, "") if environment is None else environment
        given += parse_keys(text)
        self._callers: dict[str, Caller] = {}
        for key in given:
            secret = key.key.get_secret_value()
            if len(secret) < MIN_KEY_LENGTH:
                raise ConfigError(
                    f"API key {key.name!r} is shorter than {MIN_KEY_LENGTH} characters"
                )
            per_minute = key.requests_per_minute or settings.requests_per_minute
            self._callers[_digest(secret)] = Caller(key.name, frozenset(key.scopes), per_minute)
        self.open = not self._callers
        self.anonymous = Caller("development", frozenset(SCOPES), settings.requests_per_minute)

    def identify(self, presented: str | None) -> Caller | None:
        """The caller holding this key (None: unknown); anyone in development mode."""
        if self.open:
            return self.anonymous
        if not presented:
            return None
        return self._callers.get(_digest(presented))


def presented_key(authorization: str | None, api_key: str | None) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return api_key.strip() if api_key else None


class RateLimiter:
    """A token bucket per caller: ``per_minute`` requests a minute, bursts up to a second's
    worth times ten."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, caller: Caller) -> float:
        """0 when the request may go ahead, else the seconds to wait."""
        rate = caller.per_minute / 60.0
        capacity = max(rate * 10.0, 1.0)
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(caller.name, (capacity, now))
            tokens = min(capacity, tokens + (now - then) * rate)
            if tokens < 1.0:
                self._buckets[caller.name] = (tokens, now)
                return (1.0 - tokens) / rate
            self._buckets[caller.name] = (tokens - 1.0, now)
            return 0.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: Keys) -> None:
    """Refuse to serve without keys anywhere but on loopback."""
    if keys.open and not is_loopback(host):
        raise ConfigError(
            f"no API key is configured, so aisle serves in development mode and binds to "
            f"loopback only, not {host!r}: set [serve] api_keys or {ENV_KEYS}"
        )
