"""Test-side clean-up of stand-in NICs (veth pairs) on the host."""

from __future__ import annotations

import errno

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError


def delete_links(*names: str) -> None:
    """Delete each named host link that still exists.

    A veth's peer goes with it, and a link left in a pod's netns is destroyed by the kernel's
    asynchronous netns clean-up, so a link found by name may be gone before the delete: that
    ENODEV is the goal reached, any other error is raised.
    """
    with IPRoute() as ipr:
        for name in names:
            for idx in ipr.link_lookup(ifname=name):
                try:
                    ipr.link("del", index=idx)
                except NetlinkError as exc:
                    if exc.code != errno.ENODEV:
                        raise
