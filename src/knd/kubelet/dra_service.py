"""The kubelet DRA node service, served in both wire versions (v1 and v1beta1).

Runs when kubelet syncs a pod: NodePrepareResources before the sandbox exists,
NodeUnprepareResources after its containers stopped. Kubelet allows 45 s per call; the work is
delegated to a `ClaimPreparer`. The two versions differ only in `Device.share_id` (v1 only), so
both convert to the same wire-neutral types and share one implementation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import grpc

from knd._proto.kubelet import dra_v1_pb2, dra_v1beta1_pb2
from knd.kubelet import wire
from knd.kubelet.types import ClaimPreparer, ClaimRef, PrepareResult

log = logging.getLogger(__name__)

_VERSIONS: dict[str, ModuleType] = {
    wire.DRA_V1_SERVICE: dra_v1_pb2,
    wire.DRA_V1BETA1_SERVICE: dra_v1beta1_pb2,
}


def _refs(request: Any) -> list[ClaimRef]:
    return [ClaimRef(namespace=c.namespace, uid=c.uid, name=c.name) for c in request.claims]


def _prepare_handler(
    pb: ModuleType, preparer: ClaimPreparer, with_share_id: bool
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handle(request: Any, _context: grpc.ServicerContext) -> Any:
        refs = _refs(request)
        results = preparer.prepare(refs)
        response = pb.NodePrepareResourcesResponse()
        for ref in refs:
            result = results.get(ref.uid) or PrepareResult(error="claim was not processed")
            entry = response.claims[ref.uid]
            if result.error:
                entry.error = result.error
                continue
            for dev in result.devices:
                out = entry.devices.add(
                    request_names=list(dev.request_names),
                    pool_name=dev.pool,
                    device_name=dev.device,
                    cdi_device_ids=list(dev.cdi_device_ids),
                )
                if with_share_id and dev.share_id is not None:
                    out.share_id = dev.share_id
        return response

    return handle


def _unprepare_handler(
    pb: ModuleType, preparer: ClaimPreparer
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handle(request: Any, _context: grpc.ServicerContext) -> Any:
        refs = _refs(request)
        errors = preparer.unprepare(refs)
        response = pb.NodeUnprepareResourcesResponse()
        for ref in refs:
            response.claims[ref.uid].error = errors.get(ref.uid, "")
        return response

    return handle


def dra_handlers(preparer: ClaimPreparer) -> list[grpc.GenericRpcHandler]:
    """Generic handlers for `v1.DRAPlugin` and `v1beta1.DRAPlugin` backed by `preparer`."""
    handlers: list[grpc.GenericRpcHandler] = []
    for service, pb in _VERSIONS.items():
        methods = {
            wire.PREPARE: grpc.unary_unary_rpc_method_handler(
                _prepare_handler(pb, preparer, with_share_id=pb is dra_v1_pb2),
                request_deserializer=pb.NodePrepareResourcesRequest.FromString,
                response_serializer=pb.NodePrepareResourcesResponse.SerializeToString,
            ),
            wire.UNPREPARE: grpc.unary_unary_rpc_method_handler(
                _unprepare_handler(pb, preparer),
                request_deserializer=pb.NodeUnprepareResourcesRequest.FromString,
                response_serializer=pb.NodeUnprepareResourcesResponse.SerializeToString,
            ),
        }
        handlers.append(grpc.method_handlers_generic_handler(service, methods))
    return handlers
