"""knd.host layer (see docs/architecture.md)."""
