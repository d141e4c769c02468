"""knd.kubelet layer (see docs/architecture.md)."""
