"""knd.cli layer (see docs/architecture.md)."""
