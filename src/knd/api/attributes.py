"""Attribute names knd publishes (qualified names, as they appear in a ResourceSlice).

The `dra.net/*` names are DraNet's, so existing DeviceClasses and claims keep working; the
`resource.kubernetes.io/*` names are the standard ones GPU drivers publish, so a claim can
`matchAttribute` a GPU and a NIC.
"""

from typing import Final

DEFAULT_DRIVER_NAME: Final = "dra.net"
DRANET_DOMAIN: Final = "dra.net"
STANDARD_DOMAIN: Final = "resource.kubernetes.io"


def _d(name: str) -> str:
    return f"{DRANET_DOMAIN}/{name}"


IF_NAME: Final = _d("ifName")
PCI_ADDRESS: Final = _d("pciAddress")
MAC: Final = _d("mac")
PCI_VENDOR: Final = _d("pciVendor")
PCI_DEVICE: Final = _d("pciDevice")
PCI_SUBSYSTEM: Final = _d("pciSubsystem")
NUMA_NODE: Final = _d("numaNode")
MTU: Final = _d("mtu")
ENCAPSULATION: Final = _d("encapsulation")
ALIAS: Final = _d("alias")
STATE: Final = _d("state")
TYPE: Final = _d("type")
IPV4: Final = _d("ipv4")
IPV6: Final = _d("ipv6")
TC_FILTER_NAMES: Final = _d("tcFilterNames")
TCX_PROGRAM_NAMES: Final = _d("tcxProgramNames")
EBPF: Final = _d("ebpf")
SRIOV: Final = _d("sriov")
SRIOV_VFS: Final = _d("sriovVfs")
IS_SRIOV_VF: Final = _d("isSriovVf")
VIRTUAL: Final = _d("virtual")
RDMA: Final = _d("rdma")
RDMA_DEVICE: Final = _d("rdmaDevice")
LINK_SPEED: Final = _d("linkSpeed")
#: Consumable capacity (KEP-5075) of a shareable device: how many claims may hold a sub-interface
#: of it (`--device-shares`). A capacity, not an attribute; it counts against the 32 per device.
SHARES: Final = _d("shares")
#: Capacity names (not attributes: never in PRIORITY_ORDER, never dropped for the budget).
CAPACITY_NAMES: Final[tuple[str, ...]] = (SHARES,)

STD_PCIE_ROOT: Final = f"{STANDARD_DOMAIN}/pcieRoot"
STD_NUMA_NODE: Final = f"{STANDARD_DOMAIN}/numaNode"
STD_PCI_BUS_ID: Final = f"{STANDARD_DOMAIN}/pciBusID"

# -- cloud providers (knd.inventory.cloud; DraNet's names) ---------------------------------
#: Topology and placement attributes the cloud providers publish. They rank above the cosmetic
#: dra.net attributes (MAC, MTU, state, ...): claims align NICs by them. AWS's EFA group IDs
#: are listed smallest group first.
CLOUD_ATTRIBUTES: Final[tuple[str, ...]] = (
    "resource.aws.com/devicegroup1_id",
    "resource.aws.com/devicegroup4_id",
    "resource.aws.com/devicegroup8_id",
    "resource.aws.com/devicegroup16_id",
    "gce.dra.net/networkName",
    "gce.dra.net/block",
    "gce.dra.net/subBlock",
    "gce.dra.net/host",
    "gce.dra.net/machineType",
    "gce.dra.net/networkProjectNumber",
    "gce.dra.net/ipAliases",
    "azure.dra.net/vmSize",
    "azure.dra.net/placementGroupId",
    "azure.dra.net/interconnectGroupId",
    "azure.dra.net/interconnectSubgroupId",
    "oke.dra.net/hpcIslandId",
    "oke.dra.net/networkBlockId",
    "oke.dra.net/localBlockId",
    "oke.dra.net/rackId",
    "oke.dra.net/gpuMemoryFabricId",
    "alibaba.dra.net/instanceType",
    "alibaba.dra.net/erdma",
    "coreweave.dra.net/leafSwitch",
    "coreweave.dra.net/fabric",
    "coreweave.dra.net/superpod",
    "coreweave.dra.net/leafgroup",
    "coreweave.dra.net/leafgroupName",
    "coreweave.dra.net/rack",
    "coreweave.dra.net/fabricFlavor",
    "coreweave.dra.net/instanceType",
    "coreweave.dra.net/speedExpected",
    "coreweave.dra.net/speedCurrent",
)
GCE_IP_ALIASES: Final = "gce.dra.net/ipAliases"

#: Every attribute knd may publish, most valuable first. When a device would exceed the API's
#: 32 attributes+capacities, attributes are dropped from the END of this list (documented in
#: docs/discovery.md, "API limits"): topology and identity survive, cosmetic and derived ones
#: go first.
PRIORITY_ORDER: Final[tuple[str, ...]] = (
    STD_PCIE_ROOT,
    STD_PCI_BUS_ID,
    STD_NUMA_NODE,
    IF_NAME,
    PCI_ADDRESS,
    RDMA,
    RDMA_DEVICE,
    TYPE,
    NUMA_NODE,
    SRIOV,
    SRIOV_VFS,
    IS_SRIOV_VF,
    VIRTUAL,
    *CLOUD_ATTRIBUTES,
    MAC,
    MTU,
    STATE,
    PCI_VENDOR,
    PCI_DEVICE,
    PCI_SUBSYSTEM,
    ENCAPSULATION,
    LINK_SPEED,
    IPV4,
    IPV6,
    EBPF,
    TC_FILTER_NAMES,
    TCX_PROGRAM_NAMES,
    ALIAS,
)
