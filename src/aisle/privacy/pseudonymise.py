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


def _key_file(settings: Settings) -> Path:
    return Path(settings.home) / KEY_FILE


def _check_file(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretKeyError(
            f"key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
        )


def _write_key_file(path: Path, keys: list[str]) -> None:
    """Write the keys (one per line, oldest first) through a 0600 temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(keys) + "\n")
    os.replace(temporary, path)


def load_keys(settings: Settings) -> list[bytes]:
    """The key chain, oldest first: AISLE_SECRET_KEY (comma-separated), else the 0600 key
    file in home (one key per line), made with one random key on first use."""
    if settings.secret_key is not None:
        values = settings.secret_key.get_secret_value().split(",")
        return [_check_secret(v, "AISLE_SECRET_KEY") for v in values]
    path = _key_file(settings)
    if not path.exists():
        _write_key_file(path, [secrets.token_hex(32)])
    _check_file(path)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [_check_secret(line, f"key file {path}") for line in lines or [""]]


def load_secret(settings: Settings) -> bytes:
    """The first key of the chain (the one every pseudonym starts from)."""
    return load_keys(settings)[0]


def add_key(settings: Settings) -> None:
    """Append a new random key to the key file (a rotation's first step)."""
    if settings.secret_key is not None:
        raise SecretKeyError(
            "the keys come from AISLE_SECRET_KEY: append a new random key to it "
            "(comma-separated, oldest first) and run `aisle privacy rotate-key` again"
        )
    path = _key_file(settings)
    keys = [k.decode() for k in load_keys(settings)]
    _write_key_file(path, [*keys, secrets.token_hex(32)])


class Pseudonymiser:
    """Maps raw identifiers to stable keyed pseudonyms along a chain of keys.

    The first key makes the first pseudonym, HMAC-SHA256(k1, raw) in hex, truncated; each
    later key (added by a rotation) re-keys it: HMAC-SHA256(k, previous). Stored customer
    columns hold the last; record ids and the erasure and consent lists use the first, so
    they stay valid across rotations.
    """

    def __init__(self, keys: bytes | list[bytes]) -> None:
        self._keys = [keys] if isinstance(keys, bytes) else list(keys)
        # keyed once: a copy per identifier skips hashing the key's pads again
        self._keyed = {key: hmac.new(key, digestmod=hashlib.sha256) for key in self._keys}

    def _hmac(self, key: bytes, text: str) -> str:
        keyed = self._keyed.get(key)
        mac = keyed.copy() if keyed is not None else hmac.new(key, digestmod=hashlib.sha256)
        mac.update(text.encode())
        return mac.hexdigest()[:PSEUDONYM_HEX]

    @property
    def generation(self) -> int:
        """How many keys the chain has."""
        return len(self._keys)

    def fingerprints(self) -> list[str]:
        """A check value per key, to tell whether a store was made with this chain."""
        return [self._hmac(key, "aisle key check")[:16] for key in self._keys]

    def first(self, raw: str) -> str:
        """The first-generation pseudonym of a raw identifier."""
        return self._hmac(self._keys[0], raw)

    def rekey(self, pseudonym: str, start: int = 1) -> str:
        """A pseudonym of generation ``start`` carried through the later keys."""
        for key in self._keys[start:]:
            pseudonym = self._hmac(key, pseudonym)
        return pseudonym

    def one(self, raw: str) -> str:
        """The (current) pseudonym of one raw identifier."""
        return self.rekey(self.first(raw))

    def _mappings(self, values: pl.Series) -> tuple[pl.Series, pl.Series, pl.Series]:
        """Each distinct identifier as text, its current pseudonym and its first (blank ids
        have none); hashed once per distinct value."""
        distinct = _text(values).drop_nulls().unique()
        first = pl.Series(
            [self.first(key) if (key := raw.strip()) else None for raw in distinct.to_list()],
            dtype=pl.String,
        )
        if self.generation == 1:  # one key: the first pseudonym is the current one
            return distinct, first, first
        current = pl.Series(
            [self.rekey(p) if p else None for p in first.to_list()], dtype=pl.String
        )
        return distinct, current, first

    def series(self, values: pl.Series) -> pl.Series:
        """Pseudonymise a column; hashes each distinct value once, keeps nulls and blanks null."""
        distinct, current, _ = self._mappings(values)
        return _text(values).replace_strict(distinct, current, default=None, return_dtype=pl.String)

    def frame(self, frame: pl.DataFrame, columns: list[str] | tuple[str, ...]) -> pl.DataFrame:
        """Replace every listed column that the frame has by its pseudonyms."""
        return self.frames(frame, columns)[0]

    def frames(
        self, frame: pl.DataFrame, columns: list[str] | tuple[str, ...]
    ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, str]]:
        """The frame with current pseudonyms, the same with first-generation ones, and the map
        from each current pseudonym to its first where they differ (after a key rotation)."""
        present = [name for name in columns if name in frame.columns]
        current_frame, first_frame, back = frame, frame, {}
        for name in present:
            distinct, current, first = self._mappings(frame[name])
            text = _text(frame[name])
            current_frame = current_frame.with_columns(
                text.replace_strict(distinct, current, default=None, return_dtype=pl.String)
            )
            if current is first:
                first_frame = first_frame.with_columns(current_frame[name])
                continue
            first_frame = first_frame.with_columns(
                text.replace_strict(distinct, first, default=None, return_dtype=pl.String)
            )
            back.update(
                {c: f for c, f in zip(current.to_list(), first.to_list(), strict=True) if c and f}
            )
        return current_frame, first_frame, back


def _text(values: pl.Series) -> pl.Series:
    """Identifiers as text; an array or object (from JSON) is no identifier: null, so the
    record is held as missing its customer rather than failing the batch."""
    if values.dtype.is_nested():
        return pl.Series(values.name, [None] * values.len(), dtype=pl.String)
    return values.cast(pl.String)
