"""Kubernetes API limits for ResourceSlices and claim status (resource.k8s.io/v1), as code.

Numbers from the API validation of resource.k8s.io/v1 (see shared/reference/protocols.md §4).
`check_*` functions return a list of human-readable problems (empty = within limits).
"""

import re
from typing import Final

MAX_DEVICES_PER_SLICE: Final = 128
#: When any device in the slice uses taints, consumesCounters or list-type attributes.
MAX_DEVICES_PER_SLICE_RESTRICTED: Final = 64
MAX_ATTRIBUTES_AND_CAPACITIES_PER_DEVICE: Final = 32
MAX_ATTRIBUTE_STRING_LEN: Final = 64
MAX_ATTRIBUTE_VERSION_LEN: Final = 64
MAX_ATTRIBUTE_ID_LEN: Final = 32
MAX_DNS_SUBDOMAIN_LEN: Final = 253
MAX_DRIVER_NAME_LEN: Final = 63
MAX_DEVICE_NAME_LEN: Final = 63
MAX_OPAQUE_PARAMETERS_BYTES: Final = 10 * 1024
MAX_NETWORK_DATA_IPS: Final = 16
MAX_INTERFACE_NAME_STATUS_BYTES: Final = 256
MAX_HARDWARE_ADDRESS_STATUS_BYTES: Final = 128
MAX_DEVICE_STATUS_CONDITIONS: Final = 8

_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def is_dns_label(value: str) -> bool:
    """RFC 1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, ≤63 chars."""
    return len(value) <= MAX_DEVICE_NAME_LEN and bool(_DNS_LABEL.fullmatch(value))


def is_dns_subdomain(value: str) -> bool:
    """RFC 1123 subdomain: dot-separated DNS labels, ≤253 chars in all."""
    return len(value) <= MAX_DNS_SUBDOMAIN_LEN and bool(_DNS_SUBDOMAIN.fullmatch(value))


def is_c_identifier(value: str) -> bool:
    """A C identifier of at most 32 chars (the id part of an attribute name)."""
    return len(value) <= MAX_ATTRIBUTE_ID_LEN and bool(_C_IDENTIFIER.fullmatch(value))


def check_qualified_name(name: str) -> list[str]:
    """Problems with an attribute/capacity name: `<dns-subdomain>/<c-identifier>` or a bare id."""
    domain, sep, ident = name.rpartition("/")
    problems: list[str] = []
    if sep and not is_dns_subdomain(domain):
        problems.append(f"{name!r}: domain must be a DNS subdomain of at most 63 characters")
    elif sep and len(domain) > MAX_DRIVER_NAME_LEN:
        problems.append(f"{name!r}: domain must be at most 63 characters")
    if not is_c_identifier(ident):
        problems.append(f"{name!r}: name must be a C identifier of at most 32 characters")
    return problems


def check_driver_name(name: str) -> list[str]:
    """Problems with a driver name: a lower-case DNS subdomain of at most 63 characters."""
    if len(name) > MAX_DRIVER_NAME_LEN or not is_dns_subdomain(name):
        return [f"driver name {name!r} must be a DNS subdomain of at most 63 characters"]
    return []


def max_devices_per_slice(restricted: bool) -> int:
    """Slice capacity: 64 when any device uses list attributes, taints or counters, else 128."""
    return MAX_DEVICES_PER_SLICE_RESTRICTED if restricted else MAX_DEVICES_PER_SLICE


def truncate_list_string(items: list[str], limit: int = MAX_ATTRIBUTE_STRING_LEN) -> str:
    """Comma-join `items`, dropping whole trailing elements so the result fits `limit` chars.

    DraNet learned this from kube-ipvs0 (PR #198): one over-long address list rejected the whole
    slice. An element longer than `limit` on its own is dropped, never cut in half.
    """
    out = ""
    for item in items:
        candidate = item if not out else f"{out},{item}"
        if len(candidate) > limit:
            if not out:
                continue
            break
        out = candidate
    return out
