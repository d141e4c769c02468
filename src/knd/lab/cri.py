"""A small CRI v1 client (grpcio + knd's restated CRI proto) that drives pods the way a kubelet
does: RunPodSandbox, CreateContainer/StartContainer, ExecSync, Stop/Remove. Used by the e2e
tests and bench/pod_startup.py against the project-local containerd (scripts/runtime).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc

from knd._proto import cri_pb2, cri_pb2_grpc


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass(slots=True)
class PodSpec:
    name: str
    namespace: str = "default"
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    host_network: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


class CriClient:
    def __init__(self, socket_path: str, timeout: float = 30.0) -> None:
        self._channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._rt = cri_pb2_grpc.RuntimeServiceStub(self._channel)
        self.timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def version(self) -> cri_pb2.VersionResponse:
        resp: cri_pb2.VersionResponse = self._rt.Version(
            cri_pb2.VersionRequest(version="v1"), timeout=self.timeout
        )
        return resp

    @staticmethod
    def sandbox_config(pod: PodSpec) -> cri_pb2.PodSandboxConfig:
        cfg = cri_pb2.PodSandboxConfig(
            metadata=cri_pb2.PodSandboxMetadata(
                name=pod.name, uid=pod.uid, namespace=pod.namespace, attempt=0
            ),
            labels=pod.labels,
            annotations=pod.annotations,
        )
        if pod.host_network:
            # As the kubelet: a host-network pod shares the node's UTS namespace, so no hostname.
            cfg.linux.security_context.namespace_options.network = cri_pb2.NODE
        else:
            cfg.hostname = pod.name[:63]
        return cfg

    def run_pod(self, pod: PodSpec) -> str:
        resp = self._rt.RunPodSandbox(
            cri_pb2.RunPodSandboxRequest(config=self.sandbox_config(pod)), timeout=self.timeout
        )
        return str(resp.pod_sandbox_id)

    def stop_pod(self, sandbox_id: str) -> None:
        self._rt.StopPodSandbox(
            cri_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout
        )

    def remove_pod(self, sandbox_id: str) -> None:
        self._rt.RemovePodSandbox(
            cri_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout
        )

    def pod_status(
        self, sandbox_id: str, verbose: bool = False
    ) -> cri_pb2.PodSandboxStatusResponse:
        resp: cri_pb2.PodSandboxStatusResponse = self._rt.PodSandboxStatus(
            cri_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose),
            timeout=self.timeout,
        )
        return resp

    def pod_netns(self, sandbox_id: str) -> str | None:
        """The sandbox's network namespace path, from the verbose status's runtime spec."""
        info: dict[str, Any] = json.loads(self.pod_status(sandbox_id, True).info.get("info", "{}"))
        for ns in info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
            if ns.get("type") == "network" and ns.get("path"):
                return str(ns["path"])
        return None

    def list_pods(self) -> list[cri_pb2.PodSandbox]:
        resp = self._rt.ListPodSandbox(cri_pb2.ListPodSandboxRequest(), timeout=self.timeout)
        return list(resp.items)

    def create_container(
        self, sandbox_id: str, pod: PodSpec, name: str, image: str, command: list[str]
    ) -> str:
        cfg = cri_pb2.ContainerConfig(
            metadata=cri_pb2.ContainerMetadata(name=name),
            image=cri_pb2.ImageSpec(image=image),
            command=command,
        )
        resp = self._rt.CreateContainer(
            cri_pb2.CreateContainerRequest(
                pod_sandbox_id=sandbox_id, config=cfg, sandbox_config=self.sandbox_config(pod)
            ),
            timeout=self.timeout,
        )
        return str(resp.container_id)

    def start_container(self, container_id: str) -> None:
        self._rt.StartContainer(
            cri_pb2.StartContainerRequest(container_id=container_id), timeout=self.timeout
        )

    def stop_container(self, container_id: str, grace_s: int = 0) -> None:
        self._rt.StopContainer(
            cri_pb2.StopContainerRequest(container_id=container_id, timeout=grace_s),
            timeout=self.timeout,
        )

    def remove_container(self, container_id: str) -> None:
        self._rt.RemoveContainer(
            cri_pb2.RemoveContainerRequest(container_id=container_id), timeout=self.timeout
        )

    def exec_sync(self, container_id: str, cmd: list[str], timeout_s: int = 10) -> ExecResult:
        resp = self._rt.ExecSync(
            cri_pb2.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout_s),
            timeout=self.timeout,
        )
        return ExecResult(
            int(resp.exit_code),
            resp.stdout.decode(errors="replace"),
            resp.stderr.decode(errors="replace"),
        )

    def remove_all_pods(self) -> None:
        for p in self.list_pods():
            try:
                self.stop_pod(p.id)
                self.remove_pod(p.id)
            except grpc.RpcError:
                pass
