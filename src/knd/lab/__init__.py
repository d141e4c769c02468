"""knd.lab layer (see docs/architecture.md)."""
