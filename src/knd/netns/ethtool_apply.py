"""Apply ethtool features (by kernel name) to an interface; must run on a NetnsWorker so the
ethtool ioctl socket is created in the pod netns. Reads the features back and fails if the
kernel did not take a requested value (a fixed feature, a dependency). Private flags: see
`knd.netns.privflags`."""

from __future__ import annotations

from pyroute2.ethtool import Ethtool

from knd.netns.errors import NetnsError, PlanError
from knd.netns.plan import Toggle


def apply_features(ifname: str, toggles: tuple[Toggle, ...]) -> None:
    """Set each feature; PlanError for a name the device lacks, NetnsError if not applied."""
    with Ethtool() as eth:
        current = eth.get_features(ifname)
        for t in toggles:
            if t.name not in current.features:
                raise PlanError(f"unknown ethtool feature {t.name!r} on {ifname}")
            current.features[t.name].enable = t.enable
        eth.set_features(ifname, current)
        after = eth.get_features(ifname).features
        refused = [t.name for t in toggles if after[t.name].enable != t.enable]
        if refused:
            raise NetnsError(f"kernel refused ethtool feature change(s): {', '.join(refused)}")
