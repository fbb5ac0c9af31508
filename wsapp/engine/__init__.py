"""The connection engine: one reader and one write path per socket (see docs/architecture.md)."""
