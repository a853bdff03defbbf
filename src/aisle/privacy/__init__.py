"""Privacy: pseudonymisation at the boundary (PII scrubbing, DP and erasure build on it)."""
