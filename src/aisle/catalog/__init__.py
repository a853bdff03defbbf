"""The product catalog: integration of sources, attributes, categories, near duplicates and
text embeddings."""
