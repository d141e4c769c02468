"""knd.kube layer (see docs/architecture.md)."""
