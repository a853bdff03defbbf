"""Quality: every record gets exactly one fate (accepted, quarantined or duplicate)."""
