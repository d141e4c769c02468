"""knd.netns layer (see docs/architecture.md)."""
