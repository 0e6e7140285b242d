"""The Helm chart, checked statically: no Kubernetes cluster and no Helm binary exist here.

The chart is rendered by tests/deploy/gotemplate.py (a small Go-template renderer with the Helm
functions the chart uses), every manifest is validated against the Kubernetes OpenAPI JSON schemas
that the ``kubernetes-validate`` package ships (strict: unknown fields fail), and the custom resource
KEDA adds (``ScaledObject``) and the wiring between manifests are checked structurally: images,
container ports against the Service, probes on /health and /ready, every referenced Secret exists or
is the one the values name, the workers' scale target exists, the migrations run as a hook Job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.deploy.gotemplate import TemplateError, render_chart

CHART = Path(__file__).parents[2] / "deploy" / "helm" / "lakehouse"
K8S_VERSION = "1.33.0"  # what the chart targets; Chart.yaml's kubeVersion is the floor

EXISTING = {"secrets": {"existingSecret": "lakehouse-secrets"}}
EVERYTHING = {
    "secrets": {"existingSecret": "lakehouse-secrets"},
    "ingress": {"enabled": True, "className": "nginx", "tls": {"enabled": True}},
    "autoscaling": {"enabled": True},
    "trinoCatalog": {"enabled": True},
    "controlPlane": {"persistence": {"enabled": True, "storageClass": "fast"}},
    "externalS3": {"endpoint": "http://minio.storage:9000"},
    "worker": {"capabilities": "sql,python,trino"},
    "env": [{"name": "LAKEHOUSE_LEASE_TTL_S", "value": "30"}],
    "imagePullSecrets": [{"name": "registry"}],
}
TRIAL = {"secrets": {"create": True, "values": {"databaseUrl": "postgresql+psycopg://u:p@db/lakehouse",
                                                "secretKey": "k" * 44, "executorToken": "t"}}}


def _render(values: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return render_chart(CHART, values)


def _kinds(docs: list[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for _, doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def _pod_specs(docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(doc["metadata"]["name"], doc["spec"]["template"]["spec"]) for _, doc in docs
            if doc["kind"] in ("Deployment", "Job")]


def test_the_schemas_come_from_the_package() -> None:
    assert latest_version() >= K8S_VERSION


@pytest.mark.parametrize("values", [EXISTING, EVERYTHING, TRIAL], ids=["default", "everything", "trial"])
def test_every_manifest_is_valid_kubernetes(values: dict[str, Any]) -> None:
    docs = _render(values)
    assert docs
    for source, doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a custom resource: checked in test_workers_scale_on_queue_depth
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on an invalid manifest
        assert doc["metadata"]["name"], source
        assert len(doc["metadata"]["name"]) <= 63


def test_default_install_has_the_control_plane_workers_and_migrations() -> None:
    kinds = _kinds(_render(EXISTING))
    names = {d["metadata"]["name"] for d in kinds["Deployment"]}
    assert names == {"lh-lakehouse-control-plane", "lh-lakehouse-worker"}
    assert [d["metadata"]["name"] for d in kinds["Service"]] == ["lh-lakehouse"]
    assert "Ingress" not in kinds and "ScaledObject" not in kinds and "Secret" not in kinds
    (job,) = kinds["Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_containers_use_the_image_and_run_as_non_root() -> None:
    for name, spec in _pod_specs(_render(EVERYTHING)):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for c in spec["containers"]:
            assert c["image"] == "lakehouse:0.1.0", name
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert {"/var/lib/lakehouse", "/tmp"} <= mounts, "a read-only root needs writable home and /tmp"
            volumes = {v["name"] for v in spec["volumes"]}
            assert {m["name"] for m in c["volumeMounts"]} <= volumes
        assert spec["imagePullSecrets"] == [{"name": "registry"}]
    tagged = _render({**EXISTING, "image": {"repository": "reg.example/lakehouse", "tag": "1.2.3"}})
    assert {c["image"] for _, s in _pod_specs(tagged) for c in s["containers"]} == {"reg.example/lakehouse:1.2.3"}


def test_the_service_reaches_the_control_plane_port_and_probes_hit_health_and_ready() -> None:
    kinds = _kinds(_render(EVERYTHING))
    cp = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("control-plane"))
    (svc,) = kinds["Service"]
    container = cp["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for port in svc["spec"]["ports"]:
        assert port["targetPort"] in ports, "the Service targets a port the container names"
    assert svc["spec"]["selector"].items() <= cp["spec"]["template"]["metadata"]["labels"].items()
    assert cp["spec"]["selector"]["matchLabels"].items() <= cp["spec"]["template"]["metadata"]["labels"].items()
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LAKEHOUSE_PORT"] == str(ports["http"]) and env["LAKEHOUSE_HOST"] == "0.0.0.0"
    assert container["args"][:1] == ["serve"]
    (ingress,) = kinds["Ingress"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == svc["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]


def _secret_refs(spec: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return [(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"],
             bool(e["valueFrom"]["secretKeyRef"].get("optional")))
            for c in spec["containers"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]


def test_secrets_come_from_kubernetes_secrets_that_exist() -> None:
    # an existing Secret: every reference names it, and the chart creates no Secret of its own
    docs = _render(EVERYTHING)
    refs = [r for _, spec in _pod_specs(docs) for r in _secret_refs(spec)]
    assert refs and {name for name, _, _ in refs} == {"lakehouse-secrets"}
    assert "Secret" not in _kinds(docs)
    # a trial: the chart's own Secret holds every key that is referenced without optional
    docs = _render(TRIAL)
    (secret,) = _kinds(docs)["Secret"]
    for name, key, optional in (r for _, spec in _pod_specs(docs) for r in _secret_refs(spec)):
        assert name == secret["metadata"]["name"]
        assert key in secret["stringData"] or optional
    # no value holds a secret in the rendered Deployments: only references
    for _, spec in _pod_specs(docs):
        for c in spec["containers"]:
            for e in c["env"]:
                assert "value" not in e or not any(w in e["name"] for w in ("KEY", "TOKEN", "PASSWORD", "URL")) \
                    or e["name"] in ("AWS_ENDPOINT_URL_S3",), e["name"]


def test_workers_get_a_token_but_no_database_and_no_key() -> None:
    kinds = _kinds(_render(EVERYTHING))
    worker = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("worker"))
    container = worker["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"] for e in container["env"]}
    assert "LAKEHOUSE_TOKEN" in env
    assert "LAKEHOUSE_SECRET_KEY" not in env, "the control plane alone holds the key"
    # the catalog is reached over HTTP under each phase's lease (docs/security.md, "Executors")
    assert "LAKEHOUSE_DATABASE_URL" not in env, "workers never reach the metadata database"
    refs = [e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert "database-url" not in refs and "secret-key" not in refs
    args = container["args"]
    assert args[0] == "worker" and args[args.index("--server") + 1] == "http://lh-lakehouse:80"
    assert args[args.index("--capabilities") + 1] == "sql,python,trino"


def test_workers_scale_on_queue_depth() -> None:
    kinds = _kinds(_render(EVERYTHING))
    (so,) = kinds["ScaledObject"]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    worker = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("worker"))
    assert "replicas" not in worker["spec"], "KEDA owns the replica count"
    target = so["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", worker["metadata"]["name"])
    assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert "lakehouse_queue_depth" in trigger["metadata"]["query"]
    assert all(isinstance(v, str) for v in trigger["metadata"].values()), "KEDA trigger metadata is strings"
    float(trigger["metadata"]["threshold"])
    # the metric it reads is one /metrics really exports
    from lakehouse.services import ops_metrics
    assert "lakehouse_queue_depth" in Path(ops_metrics.__file__).read_text()
    # without autoscaling the Deployment has a fixed replica count
    worker = next(d for d in _kinds(_render(EXISTING))["Deployment"] if d["metadata"]["name"].endswith("worker"))
    assert worker["spec"]["replicas"] == 2


def test_trino_catalog_points_at_our_rest_catalog() -> None:
    (cm,) = _kinds(_render(EVERYTHING))["ConfigMap"]
    props = dict(line.split("=", 1) for line in cm["data"]["iceberg.properties"].splitlines() if line)
    assert props["iceberg.catalog.type"] == "rest"
    assert props["iceberg.rest-catalog.uri"] == "http://lh-lakehouse:80/iceberg"
    assert props["iceberg.rest-catalog.oauth2.token"] == "${ENV:LAKEHOUSE_TRINO_TOKEN}"
    assert props["s3.endpoint"] == "http://minio.storage:9000"


def test_persistence_claims_a_volume_the_control_plane_mounts() -> None:
    kinds = _kinds(_render(EVERYTHING))
    (pvc,) = kinds["PersistentVolumeClaim"]
    cp = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("control-plane"))
    home = next(v for v in cp["spec"]["template"]["spec"]["volumes"] if v["name"] == "home")
    assert home["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["storageClassName"] == "fast"


def test_a_missing_secret_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(TemplateError, match="existingSecret"):
        _render({})
    with pytest.raises(TemplateError, match=r"secrets\.values\.databaseUrl"):
        _render({"secrets": {"create": True}})


def test_dependencies_are_optional_and_external_by_default() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    deps = {d["name"]: d for d in chart["dependencies"]}
    assert set(deps) == {"postgresql", "minio"}
    for name, dep in deps.items():
        assert dep["condition"] == f"{name}.enabled"
        assert values[name]["enabled"] is False
        assert dep["version"].count(".") == 2, "pinned"
    assert chart["apiVersion"] == "v2"


def test_the_schema_check_rejects_a_broken_manifest() -> None:
    _, doc = next((s, d) for s, d in _render(EXISTING) if d["kind"] == "Deployment")
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = 8000
    doc["spec"]["template"]["spec"]["containers"][0]["probe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
