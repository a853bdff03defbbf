"""One settings tree: defaults here, then aisle.toml, then AISLE_* environment variables."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

#: Stock codes that are charges, fees or manual adjustments rather than products.
DEFAULT_NON_PRODUCT_CODES = [
    "POST",
    "DOT",
    "M",
    "D",
    "C2",
    "CRUK",
    "PADS",
    "B",
    "S",
    "BANK CHARGES",
    "AMAZONFEE",
    "ADJUST",
    "ADJUST2",
    "TEST001",
    "TEST002",
]


class QualitySettings(BaseModel):
    """Thresholds of the cleaning rules."""

    require_user: bool = Field(True, description="Quarantine events without a customer id.")
    max_future_seconds: float = Field(
        300.0, description="Clock skew allowed before a timestamp counts as in the future."
    )
    oldest_timestamp: datetime = Field(
        datetime(1995, 1, 1), description="Timestamps before this are implausibly old (UTC)."
    )
    max_price: float = Field(50_000.0, description="Unit prices above this are absurd.")
    max_quantity: float = Field(1_000_000.0, description="Quantities above this are absurd.")
    rating_min: float = Field(0.5, description="Smallest valid rating value.")
    rating_max: float = Field(10.0, description="Largest valid rating value.")
    outlier_z: float = Field(
        8.0,
        description="Robust z (MAD on log1p quantity, per item) above which a quantity is extreme.",
    )
    outlier_min_ratio: float = Field(
        50.0, description="An extreme quantity is also at least this many times the item's median."
    )
    outlier_min_lines: int = Field(
        5, description="Items with fewer purchase lines in the batch are not judged for outliers."
    )
    product_code_pattern: str = Field(
        r"^\d{5}[A-Za-z]{0,3}$",
        description="Regex a retail stock code must match to count as a product (UCI adapter).",
    )
    non_product_codes: list[str] = Field(default_factory=lambda: list(DEFAULT_NON_PRODUCT_CODES))
    near_duplicate_seconds: dict[str, float] = Field(
        default_factory=lambda: {
            "view": 10.0,
            "click": 10.0,
            "add_to_cart": 5.0,
            "remove_from_cart": 5.0,
            "search": 5.0,
        },
        description="Same user, item and type within this many seconds is a near duplicate.",
    )
    bot_max_per_minute: int = Field(
        60, description="More browse events than this in one minute marks a user as a bot."
    )
    bot_max_per_day: int = Field(
        3_000, description="More browse events than this in one day marks a user as a bot."
    )
    unknown_item_grace_hours: float = Field(
        72.0, description="Events for items not yet in the catalog wait this long for the product."
    )
    check_unknown_items: bool = Field(
        True, description="Hold events whose item is not in the catalog."
    )
    drift_psi: float = Field(0.2, description="PSI above this flags drift in a categorical column.")
    drift_ks: float = Field(
        0.1, description="KS distance above this flags drift in a numeric column."
    )


class RetentionSettings(BaseModel):
    """How long personal data is kept (``aisle privacy retention apply``)."""

    events_days: int | None = Field(
        None, description="Raw events older than this become daily aggregates; unset keeps all."
    )
    quarantine_days: int | None = Field(
        90, description="Held records older than this lose their payload and customer."
    )


class PrivacySettings(BaseModel):
    """Differentially private releases."""

    epsilon_budget: float = Field(
        10.0, description="Total epsilon all releases of one dataset may spend (basic composition)."
    )
    delta: float = Field(1e-6, description="The delta of each (epsilon, delta) release.")
    contribution_bound: float = Field(
        2.0, description="Largest L2 norm of one customer's contribution to a release."
    )
    k_anonymity: int = Field(
        5, description="Exports refuse quasi-identifier combinations shared by fewer people."
    )
    quasi_identifiers: list[str] = Field(
        default_factory=lambda: [
            "age",
            "gender",
            "sex",
            "zip",
            "zip_code",
            "postcode",
            "postal_code",
            "country",
            "city",
            "birth_year",
            "birth_date",
            "occupation",
        ],
        description="Columns that, combined, can single a person out.",
    )


class CatalogSettings(BaseModel):
    """How products from several sources become one record, and how the catalog is enriched."""

    source_priority: list[str] = Field(
        default_factory=lambda: [
            "canonical", "bestbuy-xml", "bestbuy-products", "uci-online-retail"
        ],
        description="Sources in order of trust; sources not listed rank after these.",
    )  # fmt: skip
    field_rules: dict[str, str] = Field(
        default_factory=lambda: {
            "title": "priority",
            "description": "complete",
            "category_path": "complete",
            "brand": "priority",
            "price": "freshest",
            "attributes": "priority",
        },
        description="Per field, how the winner is chosen: priority, freshest or complete.",
    )
    min_category_confidence: float = Field(
        0.5, description="Inferred categories below this confidence are flagged, not filled."
    )
    embedding_model: str = Field(
        "minilm", description="Text embeddings: minilm (all-MiniLM-L6-v2) or static (model2vec)."
    )
    duplicate_jaccard: float = Field(
        0.6, description="Near-duplicate products: least MinHash Jaccard similarity of titles."
    )
    duplicate_cosine: float = Field(
        0.9, description="Near-duplicate products: least cosine similarity of their embeddings."
    )


class RecommendSettings(BaseModel):
    """How behaviour becomes the interactions recommenders learn from."""

    event_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "view": 1.0,
            "click": 2.0,
            "add_to_cart": 4.0,
            "remove_from_cart": 0.0,
            "purchase": 8.0,
            "rating": 1.0,
        },
        description="Weight of one event of each type; types not listed weigh nothing.",
    )
    half_life_days: float | None = Field(
        None, description="Time decay: an event this many days older weighs half; unset: none."
    )


class SearchSettings(BaseModel):
    """How search reads queries and learns from clicks."""

    synonyms: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Equivalent phrasings, e.g. {"tv" = ["television"]}; a key ending in "=>" '
        "is one-way (the key is rewritten to the phrases, not back).",
    )
    click_half_life_days: float = Field(
        14.0, gt=0, description="A click this many days older than the newest weighs half."
    )


class IngestSettings(BaseModel):
    """Defaults applied while reading sources."""

    default_currency: str = "USD"
    default_consent_personalisation: bool = True
    default_consent_analytics: bool = True
    http_timeout_seconds: float = 60.0


class MappingAdapterSettings(BaseModel):
    """A generic adapter: source columns mapped onto the event or product schema."""

    kind: str = Field("events", description="'events' or 'products'.")
    columns: dict[str, str] = Field(default_factory=dict, description="field -> source column")
    constants: dict[str, Any] = Field(default_factory=dict, description="field -> fixed value")
    type_map: dict[str, str] = Field(default_factory=dict, description="source value -> type")
    user_columns: list[str] = Field(
        default_factory=list, description="Source columns holding customer identifiers."
    )
    timestamp_format: str | None = None
    timezone: str = "UTC"
    delimiter: str | None = None


class ApiKeySettings(BaseModel):
    """One API key and what it may do."""

    name: str = Field(description="Who holds the key (named in logs, never the key itself).")
    key: SecretStr = Field(description="The secret the client sends as `Authorization: Bearer`.")
    scopes: list[Literal["ingest", "read", "admin"]] = Field(
        default=["read"], description="ingest, read and/or admin."
    )
    requests_per_minute: int | None = Field(
        None, gt=0, description="This key's rate limit; unset: the server's default."
    )


class ServeSettings(BaseModel):
    """The HTTP service: where it listens, who may call it, how it keeps its models fresh."""

    host: str = Field("127.0.0.1", description="Address to bind; non-loopback needs API keys.")
    port: int = Field(8000, ge=0, le=65535)
    api_keys: list[ApiKeySettings] = Field(
        default_factory=list,
        description="Keys with scopes; AISLE_API_KEYS='name:key:scope+scope,...' adds more. "
        "With none the server runs open, on loopback only.",
    )
    requests_per_minute: int = Field(
        600_000, gt=0, description="Default per-key rate limit (a token bucket)."
    )
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0, description="Larger requests get 413.")
    max_batch_events: int = Field(50_000, gt=0, description="Events in one POST at most.")
    recommender: str = Field("als", description="The model serving recommendations by default.")
    retrain_every_minutes: float | None = Field(
        None, gt=0, description="Retrain the served models on this schedule; unset: never."
    )
    retrain_after_events: int | None = Field(
        None, gt=0, description="Retrain once this many new events have arrived; unset: never."
    )
    gate_tolerance: float = Field(
        0.0,
        ge=0,
        description="A retrained version goes live only if its validation NDCG@10 is at least "
        "the current one's minus this.",
    )


class VariantSettings(BaseModel):
    """One arm of an experiment."""

    model: str = Field(description="The recommender (registry name) this arm serves.")
    weight: float = Field(1.0, gt=0, description="Share of customers, relative to the others.")


class ExperimentSettings(BaseModel):
    """An A/B test: customers split by hashed id across variants."""

    surface: Literal["recommendations", "search"] = "recommendations"
    variants: dict[str, VariantSettings] = Field(
        description="Variant name -> what it serves; the first is the control."
    )
    enabled: bool = True
    salt: str | None = Field(
        None, description="Hash salt; unset: the experiment's name (a new salt reshuffles)."
    )


class Settings(BaseSettings):
    """Every setting of aisle. Documented in aisle.example.toml."""

    model_config = SettingsConfigDict(
        env_prefix="AISLE_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(Path("var"), description="Directory holding the store and all artifacts.")
    secret_key: SecretStr | None = Field(
        None, description="Pseudonymisation secret; when unset, a key file in home is used."
    )
    quality: QualitySettings = Field(default_factory=QualitySettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    recommend: RecommendSettings = Field(default_factory=RecommendSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    adapters: dict[str, MappingAdapterSettings] = Field(default_factory=dict)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    experiments: dict[str, ExperimentSettings] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("AISLE_CONFIG", "aisle.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )


def load_settings(**overrides: Any) -> Settings:
    """Settings from defaults, aisle.toml (or $AISLE_CONFIG), AISLE_* variables and overrides."""
    return Settings(**overrides)
