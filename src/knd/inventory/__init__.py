"""knd.inventory layer (see docs/architecture.md)."""
