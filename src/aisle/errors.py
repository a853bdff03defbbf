"""Typed errors: each says what was wrong, where, and what to do."""

from __future__ import annotations


class AisleError(Exception):
    """Base class of every error aisle raises on purpose."""


class ConfigError(AisleError):
    """A setting is missing, malformed or unsafe."""


class SecretKeyError(ConfigError):
    """The pseudonymisation secret is missing, a placeholder, or too weak."""


class InputError(AisleError):
    """An input file cannot be read; names the file, and the line and field where known."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.source = source
        self.line = line
        self.field = field
        self.hint = hint
        where = source
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field {field!r}"
        text = f"{where}: {message}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class SearchError(AisleError, ValueError):
    """A search asks for what the index cannot do: an unknown sort, filter or facet."""


class UnknownAdapterError(AisleError):
    """No adapter of that name is registered."""


class StoreError(AisleError):
    """The embedded store cannot be opened or is inconsistent."""


class ReconciliationError(StoreError):
    """An import's counts do not add up: input != accepted + quarantined + duplicates."""


class NotFoundError(AisleError):
    """A record asked for by id does not exist."""


class PrivacyBudgetError(AisleError):
    """A differentially private release would spend more than the dataset's budget."""


class KeyRotationPendingError(SecretKeyError):
    """The key chain has a key the store was not yet re-keyed with."""
