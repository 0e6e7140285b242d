"""deploy/compose.yaml, the Dockerfile and Trino's catalog file, checked statically (no Docker engine
runs here): the compose file against the Compose Specification's JSON schema (shipped by the
``check-jsonschema`` package, never downloaded at test time) plus the wiring between services; the
Dockerfile structurally (non-root, the port, a health check, one image for both roles)."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DEPLOY = Path(__file__).parents[2] / "deploy"


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_has_every_part_of_the_lakehouse() -> None:
    services = _compose()["services"]
    assert {"postgres", "minio", "migrate", "control-plane", "worker", "trino", "spark-master",
            "spark-worker"} <= set(services)
    images = {s.get("image", "") for s in services.values()}
    assert all(":" in i and not i.endswith(":latest") for i in images), "every image is pinned"


def test_compose_wiring() -> None:
    compose = _compose()
    services = compose["services"]
    # dependencies name real services; a migration runs before the control plane
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}) or {}:
            assert dep in services, f"{name} depends on unknown {dep}"
    assert services["control-plane"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    # one image for the control plane and the workers, built from deploy/Dockerfile
    lakehouse = [n for n, s in services.items() if "LAKEHOUSE_IMAGE" in str(s.get("image", ""))]
    assert {"control-plane", "worker", "migrate", "bootstrap"} <= set(lakehouse)
    assert services["migrate"]["build"]["dockerfile"] == "deploy/Dockerfile"
    # the control plane is reached on the port it serves, and health-checked on /ready
    cp = services["control-plane"]
    assert any(p.endswith(":8000") for p in cp["ports"]) and "8000" in cp["command"]
    assert "/ready" in " ".join(cp["healthcheck"]["test"])
    # workers get neither the secret key nor the metadata database: the catalog is reached over HTTP
    # under each phase's lease (docs/security.md, "Executors")
    worker_env = services["worker"]["environment"]
    assert "LAKEHOUSE_SECRET_KEY" not in worker_env and "LAKEHOUSE_DATABASE_URL" not in worker_env
    assert not any("postgres" in str(v) for v in worker_env.values()), "no way to the metadata database"
    assert worker_env["LAKEHOUSE_WAREHOUSE"].startswith("s3://")  # data files: the worker's own S3 credentials
    assert "http://control-plane:8000" in " ".join(services["worker"]["command"])
    assert "LAKEHOUSE_DATABASE_URL" in cp["environment"]
    # named volumes exist
    declared = set(compose["volumes"])
    for svc in services.values():
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared
    # secrets are required from the environment, never written in the file
    text = (DEPLOY / "compose.yaml").read_text()
    for var in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "LAKEHOUSE_SECRET_KEY"):
        assert f"${{{var}:?" in text
    assert set(re.findall(r"^([A-Z_]+)=", (DEPLOY / "env.example").read_text(), re.M)) >= {
        "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "LAKEHOUSE_SECRET_KEY", "LAKEHOUSE_TRINO_TOKEN"}


def test_trino_sees_our_rest_catalog_and_the_s3_warehouse() -> None:
    services = _compose()["services"]
    trino = services["trino"]
    mount = next(v for v in trino["volumes"] if "iceberg.properties" in v)
    host, container = mount.split(":")[:2]
    assert container == "/etc/trino/catalog/iceberg.properties"
    props = dict(line.split("=", 1) for line in (DEPLOY / host).read_text().splitlines()
                 if line and not line.startswith("#"))
    assert props["connector.name"] == "iceberg" and props["iceberg.catalog.type"] == "rest"
    env_refs = set(re.findall(r"\$\{ENV:([A-Z_]+)\}", "\n".join(props.values())))
    assert env_refs <= set(trino["environment"]), "every ${ENV:X} the catalog reads is set on the service"
    assert trino["environment"]["LAKEHOUSE_ICEBERG_URI"] == "http://control-plane:8000/iceberg"
    assert trino["environment"]["S3_ENDPOINT"] == "http://minio:9000"
    assert props["s3.path-style-access"] == "true"


def test_dockerfile_builds_one_non_root_image_for_both_roles() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    stages = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(stages) >= 2 and stages[-1].endswith("AS runtime")
    runtime = lines[lines.index(stages[-1]):]
    user = next(ln for ln in runtime if ln.startswith("USER "))
    assert not user.split()[1].startswith(("0", "root"))
    assert "EXPOSE 8000" in runtime
    assert any("HEALTHCHECK" in ln for ln in runtime) and "/health" in text
    assert 'ENTRYPOINT ["lakehouse"]' in runtime and 'CMD ["serve"]' in runtime
    assert "LAKEHOUSE_HOST=0.0.0.0" in text
    # what the build copies is in its context (deploy/Dockerfile.dockerignore) and in the repository
    root = DEPLOY.parent
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for ln in lines:
        if ln.startswith("COPY ") and "--from=" not in ln:
            for src in ln.split()[1:-1]:
                assert (root / src).exists(), src
                assert f"!{src}" in ignore or f"!{src.split('/')[0]}/" in ignore, f"{src} excluded from the context"


def test_the_compose_schema_check_rejects_a_broken_file() -> None:
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    broken = _compose()
    broken["services"]["worker"]["restart"] = {"always": True}
    broken["services"]["trino"]["portz"] = ["8080"]
    assert len(list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))) >= 2
