"""Serving: the HTTP API over the store, the models and the search index."""
