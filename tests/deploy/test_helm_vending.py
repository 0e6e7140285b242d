"""The Helm chart with per-lease S3 credentials (``externalS3.vending.roleArn``): the control plane gets
the vending settings and keeps its S3 key (the vending identity), the workers get no S3 key at all
(docs/security.md, "Storage credentials per lease"); without vending, the workers keep theirs."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from tests.deploy.test_helm import EXISTING, K8S_VERSION, _kinds, _render

VENDING = {**EXISTING, "externalS3": {"vending": {"roleArn": "arn:aws:iam::123456789012:role/lakehouse-{workspace}",
                                                  "stsEndpoint": "https://sts.eu-west-1.amazonaws.com"}}}
KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def _env(values: dict[str, Any], suffix: str) -> dict[str, dict[str, Any]]:
    (deployment,) = [d for d in _kinds(_render(values))["Deployment"] if d["metadata"]["name"].endswith(suffix)]
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_with_vending_workers_get_no_s3_key_and_the_control_plane_vends() -> None:
    worker, server = _env(VENDING, "-worker"), _env(VENDING, "-control-plane")
    assert not KEYS & set(worker), "a worker reaches storage only with its leases' credentials"
    assert "LAKEHOUSE_S3_VENDING_ROLE_ARN" not in worker
    assert worker["LAKEHOUSE_WAREHOUSE"]["value"] == "s3://lakehouse/warehouse"
    assert set(server) >= KEYS, "the control plane's own key is the vending identity"
    assert server["LAKEHOUSE_S3_VENDING_ROLE_ARN"]["value"] == "arn:aws:iam::123456789012:role/lakehouse-{workspace}"
    assert server["LAKEHOUSE_S3_VENDING_DURATION_S"]["value"] == "3600"
    assert server["LAKEHOUSE_S3_STS_ENDPOINT"]["value"] == "https://sts.eu-west-1.amazonaws.com"


def test_without_vending_workers_keep_their_own_s3_key() -> None:
    worker, server = _env(EXISTING, "-worker"), _env(EXISTING, "-control-plane")
    assert set(worker) >= KEYS and set(server) >= KEYS
    assert "LAKEHOUSE_S3_VENDING_ROLE_ARN" not in server
