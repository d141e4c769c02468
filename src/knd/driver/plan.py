"""The injection point for AttachPlan construction (host capture + plan), and profiles.

THE INTEGRATION POINT WITH knd.netns: `PrepareEngine` calls `PlanBuilder.build(...)` once per
allocated device of our driver, after config resolution, and persists whatever JSON-shaped
mapping it returns as the device's plan before answering kubelet. knd.netns owns host capture
and the real AttachPlan; at merge time pass its builder to `PrepareEngine(plan_builder=...)`.
`ConfigOnlyPlanBuilder` is a placeholder that records the resolved config and nothing from the
host, so the kubelet side can be built and tested on its own.

`ProfileProvider` is the hook for stateful per-claim intent (IPAM): `resolve` may return a
config merged under the user's (user wins); `release` is called on unprepare.
Implementations: knd.driver.profiles (node-local IPAM, DraNet's provider webhook).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from knd.api.config import NetworkConfig
from knd.driver.claim_api import Claim


class PlanBuilder(Protocol):
    def build(
        self,
        device_name: str,
        pod_uid: str,
        claim: Claim,
        request: str,
        config: NetworkConfig,
    ) -> Mapping[str, Any]:
        """Capture host state and return the device's AttachPlan as a JSON-shaped mapping.

        Raise `knd.driver.errors.ClaimError` with an actionable message when the device
        cannot be attached as configured (missing interface, unknown ethtool feature, ...).
        """
        ...


class ProfileProvider(Protocol):
    def resolve(
        self,
        claim_uid: str,
        device_name: str,
        profile: str,
        config: NetworkConfig | None = None,
    ) -> NetworkConfig:
        """The profile's config for the device; `config` is the merged config asking for it
        (DraNet sends it to webhooks). Raises ClaimError with an actionable message."""
        ...

    def release(self, claim_uid: str, device_name: str, profile: str) -> None: ...


class ConfigOnlyPlanBuilder:
    """Placeholder PlanBuilder: the plan is the resolved config, no host capture."""

    def build(
        self,
        device_name: str,
        pod_uid: str,
        claim: Claim,
        request: str,
        config: NetworkConfig,
    ) -> Mapping[str, Any]:
        return {
            "kind": "config-only",
            "device": device_name,
            "podUID": pod_uid,
            "request": request,
            "config": config.to_json_obj(),
        }
