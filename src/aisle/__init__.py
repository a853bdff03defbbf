"""aisle: e-commerce search and recommendation built on trustworthy data."""

from aisle.errors import AisleError, InputError

__version__ = "0.1.0"

__all__ = ["AisleError", "InputError", "__version__"]
