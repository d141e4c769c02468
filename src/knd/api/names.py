"""Device naming, exactly as DraNet names devices (pkg/names).

* PCI function `0000:8a:00.0` → `pci-0000-8a-00-0`.
* A non-PCI interface keeps its name when that is a DNS-1123 label, else it becomes `net-` +
  lower-case unpadded RFC 4648 base32 of the name (`mlx5_6` → `net-nvwhqnk7gy`).
"""

import base64
import re

from knd.api.limits import is_dns_label

_PCI_ADDRESS = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]")
PCI_PREFIX = "pci-"
NET_PREFIX = "net-"


def is_pci_address(value: str) -> bool:
    """True for an extended BDF `dddd:bb:dd.f` (hex digits, function 0-7)."""
    return bool(_PCI_ADDRESS.fullmatch(value))


def pci_device_name(pci_address: str) -> str:
    """`0000:8a:00.0` → `pci-0000-8a-00-0`. Raises ValueError for anything but a BDF."""
    if not is_pci_address(pci_address):
        raise ValueError(f"not a PCI address (want dddd:bb:dd.f): {pci_address!r}")
    return PCI_PREFIX + pci_address.lower().replace(":", "-").replace(".", "-")


def interface_device_name(ifname: str) -> str:
    """Device name for a non-PCI interface (or an RDMA device without PCI address). The empty
    name stays empty, as in DraNet (no interface is unnamed; callers never publish it)."""
    if not ifname or is_dns_label(ifname):
        return ifname
    encoded = base64.b32encode(ifname.encode()).decode("ascii").rstrip("=").lower()
    return NET_PREFIX + encoded


def decode_interface_device_name(device_name: str) -> str | None:
    """Inverse of `interface_device_name` for encoded names; None when not `net-`-encoded."""
    if not device_name.startswith(NET_PREFIX):
        return None
    body = device_name[len(NET_PREFIX) :].upper()
    body += "=" * (-len(body) % 8)
    try:
        return base64.b32decode(body).decode()
    except (ValueError, UnicodeDecodeError):
        return None
