"""Claims stay the API server's JSON: the typed shapes (knd.api.claims) describe it, nothing
converts it, so fields knd does not know reach every reader unchanged."""

from __future__ import annotations

import pytest
from kubelet_claims import DRIVER, claim

from knd.driver.claim_api import KubeClaimApi
from knd.lab.apiserver import ApiServerEmulator

pytestmark = pytest.mark.unit


def test_a_claim_read_is_the_servers_json_untouched(
    apiserver: ApiServerEmulator, kube_api: KubeClaimApi
) -> None:
    obj = claim("shapes", [("nic", DRIVER, "eth1")])
    obj["metadata"]["annotations"] = {"example.com/keep": "me"}
    obj["status"]["allocation"]["devices"]["results"][0]["bindingConditions"] = ["Ready"]
    stored = apiserver.put_claim(obj)
    got = kube_api.get("default", "shapes")
    assert got == stored  # every key, known to knd.api.claims or not
    results = (got.get("status") or {}).get("allocation", {}).get("devices", {}).get("results")
    assert results is not None
    assert results[0].get("bindingConditions") == ["Ready"]
    assert results[0].get("device") == "eth1"
