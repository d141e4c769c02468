"""Names on the kubelet wire: gRPC service names, full method paths, registration strings.

Handlers are registered by full path (`grpc.method_handlers_generic_handler`), so the generated
code only provides message classes. Every string here is pinned by the upstream protocol
(shared/reference/protocols.md §3) and checked by tests/unit/test_proto_wire.py.
"""

from typing import Final

DRA_V1_SERVICE: Final = "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"
DRA_V1BETA1_SERVICE: Final = "k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin"
REGISTRATION_SERVICE: Final = "pluginregistration.Registration"
HEALTH_V1ALPHA1_SERVICE: Final = "v1alpha1.DRAResourceHealth"

PREPARE: Final = "NodePrepareResources"
UNPREPARE: Final = "NodeUnprepareResources"
GET_INFO: Final = "GetInfo"
NOTIFY: Final = "NotifyRegistrationStatus"
WATCH: Final = "NodeWatchResources"

#: PluginInfo.type for a DRA driver.
PLUGIN_TYPE: Final = "DRAPlugin"
#: supported_versions, in preference order: kubelet (1.34+) takes the first one it knows.
SUPPORTED_VERSIONS: Final[tuple[str, ...]] = (
    "v1.DRAPlugin",
    "v1beta1.DRAPlugin",
    "v1alpha1.DRAResourceHealth",
)


def method(service: str, name: str) -> str:
    """Full gRPC method path `/<service>/<method>`."""
    return f"/{service}/{name}"
