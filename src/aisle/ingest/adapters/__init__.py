"""Dataset adapters, looked up by name; generic mapping adapters come from settings."""

from __future__ import annotations

from importlib import import_module

from aisle.config import Settings
from aisle.errors import UnknownAdapterError
from aisle.ingest.adapters.base import AdaptContext, Adapter, BaseAdapter, Parsing

#: name -> "module:factory"; imported on first use so a broken optional adapter harms no other.
BUILTIN: dict[str, str] = {
    "uci-online-retail": "aisle.ingest.adapters.uci_online_retail:UciOnlineRetail",
    "movielens-100k": "aisle.ingest.adapters.movielens:MovieLens100k",
    "amazon-games-sasrec": "aisle.ingest.adapters.amazon_games:AmazonGamesSasrec",
    "bestbuy-clicks": "aisle.ingest.adapters.bestbuy:BestBuyClicks",
    "bestbuy-products": "aisle.ingest.adapters.bestbuy:BestBuyProducts",
    "bestbuy-xml": "aisle.ingest.adapters.bestbuy:BestBuyXml",
    "crowdflower": "aisle.ingest.adapters.crowdflower:Crowdflower",
    "canonical": "aisle.ingest.adapters.canonical:Canonical",
}


def adapter_names(settings: Settings) -> list[str]:
    """Every adapter name: the built-in ones and those configured in [adapters.*]."""
    return sorted({*BUILTIN, *settings.adapters})


def get_adapter(name: str, settings: Settings) -> Adapter:
    """The adapter called ``name``; configured mapping adapters win over built-ins."""
    if name in settings.adapters:
        from aisle.ingest.adapters.mapping import MappingAdapter  # noqa: PLC0415 (lazy)

        return MappingAdapter(name, settings.adapters[name])
    if name not in BUILTIN:
        known = ", ".join(adapter_names(settings))
        raise UnknownAdapterError(f"no adapter named {name!r}; known adapters: {known}")
    module_name, factory = BUILTIN[name].split(":")
    adapter: Adapter = getattr(import_module(module_name), factory)()
    return adapter


__all__ = ["AdaptContext", "Adapter", "BaseAdapter", "Parsing", "adapter_names", "get_adapter"]
