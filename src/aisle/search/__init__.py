"""Product search: documents, lexical and dense indexes, query understanding, ranking."""
