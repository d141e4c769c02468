"""knd: a Kubernetes Network Driver (DRA kubelet plugin + NRI plugin), DraNet-compatible."""

__version__ = "0.1.0"
