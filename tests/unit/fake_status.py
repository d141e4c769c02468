"""A stand-in for the claim status writer: records what the NRI hooks submit."""

from __future__ import annotations

from collections.abc import Sequence

from knd.driver.status_writer import DeviceStatus


class FakeStatus:
    """`StatusWriter.submit` recorded as (namespace, name, devices)."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, str, list[DeviceStatus]]] = []

    def submit(
        self,
        namespace: str,
        name: str,
        devices: Sequence[DeviceStatus],
        remove: bool = False,
        uid: str | None = None,
    ) -> bool:
        self.submitted.append((namespace, name, list(devices)))
        return True

    def conditions(self) -> dict[str, tuple[bool, str]]:
        """(status, reason) by condition type of the last submit's only entry."""
        (entry,) = self.submitted[-1][2]
        return {c.type: (c.status, c.reason) for c in entry.conditions}
