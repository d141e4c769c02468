"""The lazily indexed pci.ids gives the same names as a full parse, parsing only the vendors
that are looked up."""

from __future__ import annotations

from knd.host import pciids
from tests.fixtures.pciids import TEXT as PCI_IDS


def test_lazy_index_matches_full_parse() -> None:
    full = pciids.parse(PCI_IDS)
    lazy = pciids.index(PCI_IDS)
    assert lazy.vendors == full.vendors
    assert lazy.parsed == set()
    for (vendor, device), name in full.devices.items():
        assert lazy.device(vendor.upper(), device) == name
    for key, name in full.subsystems.items():
        assert lazy.subsystem(*key) == name
    assert lazy.device("ffff", "0001") is None
    assert lazy.parsed <= set(full.vendors)
