"""knd.driver layer (see docs/architecture.md)."""
