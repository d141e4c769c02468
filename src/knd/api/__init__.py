"""The claim-config API and API-facing constants.

Pure logic, no OS access: the opaque configuration schema (DraNet-compatible), its strict
decoding, validation, defaults and merge; the attribute names; device naming; Kubernetes API
limits as code. Every other layer may import this one; it imports none of them.
"""
