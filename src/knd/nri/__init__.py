"""knd.nri layer (see docs/architecture.md)."""
