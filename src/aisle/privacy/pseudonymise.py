"""Keyed HMAC-SHA256 pseudonyms: raw customer ids never get past ingest."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

import polars as pl

from aisle.config import Settings
from aisle.errors import SecretKeyError

KEY_FILE = "secret.key"
#: Hex characters kept from the HMAC digest: 128 bits, collision-free at any shop's scale.
PSEUDONYM_HEX = 32
_PLACEHOLDERS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "password",
        "placeholder",
        "default",
        "test",
        "xxx",
        "aisle",
        "your-secret-key",
        "replace-me",
        "changethis",
    }
)
MIN_SECRET_LENGTH = 16


def _check_secret(secret: str, origin: str) -> bytes:
    value = secret.strip()
    if value.lower() in _PLACEHOLDERS or value.lower().startswith("change"):
        raise SecretKeyError(
            f"{origin} holds a placeholder secret; set a random value "
            "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    if len(value) < MIN_SECRET_LENGTH:
        raise SecretKeyError(
            f"{origin} is shorter than {MIN_SECRET_LENGTH} characters; "
            "use a random 32-byte hex value"
        )
    return value.encode()


def load_secret(settings: Settings) -> bytes:
    """The pseudonymisation key: AISLE_SECRET_KEY, else a 0600 key file made in home."""
    if settings.secret_key is not None:
        return _check_secret(settings.secret_key.get_secret_value(), "AISLE_SECRET_KEY")
    path = Path(settings.home) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretKeyError(
            f"key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
        )
    return _check_secret(path.read_text(), f"key file {path}")


class Pseudonymiser:
    """Maps raw identifiers to stable keyed pseudonyms (HMAC-SHA256, hex, truncated)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def one(self, raw: str) -> str:
        """The pseudonym of one raw identifier."""
        digest = hmac.new(self._key, raw.encode(), hashlib.sha256).hexdigest()
        return digest[:PSEUDONYM_HEX]

    def series(self, values: pl.Series) -> pl.Series:
        """Pseudonymise a column; hashes each distinct value once, keeps nulls and blanks null."""
        text = values.cast(pl.String)
        distinct = text.drop_nulls().unique()
        mapping = {
            raw: (self.one(key) if (key := raw.strip()) else None) for raw in distinct.to_list()
        }
        return text.replace_strict(mapping, default=None, return_dtype=pl.String)

    def frame(self, frame: pl.DataFrame, columns: list[str] | tuple[str, ...]) -> pl.DataFrame:
        """Replace every listed column that the frame has by its pseudonyms."""
        present = [name for name in columns if name in frame.columns]
        if not present:
            return frame
        return frame.with_columns([self.series(frame[name]) for name in present])
