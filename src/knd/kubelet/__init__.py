"""The kubelet-facing transport: DRA gRPC services, plugin registration and device health.

Speaks the kubelet's wire (proto/kubelet/*.proto, generated into knd._proto.kubelet) over unix
sockets. It knows nothing about claims beyond the wire: preparation is delegated to a
`ClaimPreparer` (knd.driver.prepare implements it), device health to a `HealthSource`.
"""
