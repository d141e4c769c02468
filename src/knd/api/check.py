"""One entry point for "is this config acceptable, and what does it mean": decode → defaults →
validate (→ RDMA-only rules). Used by prepare and by `knd config validate`."""

from __future__ import annotations

from knd.api.config import NetworkConfig, decode
from knd.api.defaults import with_defaults
from knd.api.errors import ConfigError
from knd.api.validation import validate, validate_rdma_only


def finalize(cfg: NetworkConfig, rdma_only: bool = False) -> NetworkConfig:
    """Apply defaults and validate; return the final config or raise ConfigError (all
    problems, each with its JSON path)."""
    cfg = with_defaults(cfg)
    errors = validate(cfg)
    if rdma_only:
        errors += validate_rdma_only(cfg)
    if errors:
        raise ConfigError(errors)
    return cfg


def check_parameters(parameters: object, rdma_only: bool = False) -> NetworkConfig:
    """Decode + finalize an opaque `parameters` JSON value."""
    return finalize(decode(parameters), rdma_only=rdma_only)
