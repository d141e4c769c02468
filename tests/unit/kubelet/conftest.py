"""Fixtures for the kubelet-side tests: API server emulator, kube client, store, engine, plugin,
kubelet emulator (all on loopback / unix sockets under tmp_path; no root needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubelet_claims import DRIVER, POOL

from knd.driver.claim_api import KubeClaimApi
from knd.driver.prepare import PrepareEngine
from knd.driver.store import StateStore
from knd.kube.connection import connect_url
from knd.kubelet.plugin import KubeletPlugin
from knd.lab.apiserver import ApiServerEmulator
from knd.lab.kubelet import KubeletEmulator


@pytest.fixture
def apiserver() -> Iterator[ApiServerEmulator]:
    server = ApiServerEmulator().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kube_api(apiserver: ApiServerEmulator) -> KubeClaimApi:
    return KubeClaimApi(connect_url(apiserver.url), component=DRIVER, host=POOL)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state" / "knd.db")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def engine(store: StateStore, kube_api: KubeClaimApi) -> PrepareEngine:
    return PrepareEngine(driver=DRIVER, store=store, reader=kube_api, events=kube_api)


@pytest.fixture
def kroot(tmp_path: Path) -> Path:
    root = tmp_path / "kubelet"
    root.mkdir()
    return root


@pytest.fixture
def plugin(engine: PrepareEngine, kroot: Path) -> Iterator[KubeletPlugin]:
    p = KubeletPlugin(DRIVER, engine, kroot)
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def kubelet(kroot: Path) -> Iterator[KubeletEmulator]:
    emu = KubeletEmulator(kroot).start()
    try:
        yield emu
    finally:
        emu.stop()
