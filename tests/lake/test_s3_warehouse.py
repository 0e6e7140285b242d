"""An s3:// warehouse through the same code path as a local one.

S3 here is ``moto``'s server (a real S3 HTTP endpoint on 127.0.0.1, random port) — moto is the only
stand-in in this suite; the catalog database (SQLite and PostgreSQL), pyiceberg and DuckDB are real.
Credentials and the endpoint reach pyiceberg and DuckDB through the AWS_* environment variables, or
through the LAKEHOUSE_S3_* settings (a worker's lease catalog, last test).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from lakehouse.domain.principal import SYSTEM
from lakehouse.lake import duck
from lakehouse.lake.catalog import catalog_for, close_catalogs
from lakehouse.lake.tables import read_table, write_table
from lakehouse.services import sql
from lakehouse.services.context import Context, open_context
from lakehouse.settings import Settings
from tests.lake.support import purge_catalog


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for var, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test-key",
                           "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_REGION": "us-east-1"}.items():
            mp.setenv(var, value)
        mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test-key",
                              aws_secret_access_key="test-secret", region_name="us-east-1")
        client.create_bucket(Bucket="lake")
        client.create_bucket(Bucket="other")
        client.put_object(Bucket="other", Key="secret.csv", Body=b"a\n1\n")
        try:
            yield client
        finally:
            close_catalogs()
            server.stop()


@pytest.fixture
def s3_ctx(settings: Settings, s3: Any, request: pytest.FixtureRequest) -> Iterator[Context]:
    prefix = f"warehouse-{request.node.callspec.id}"
    c = open_context(settings.model_copy(update={"warehouse": f"s3://lake/{prefix}"}))
    yield c
    c.db.dispose()


def test_s3_round_trip(s3_ctx: Context, s3: Any) -> None:
    catalog = catalog_for(s3_ctx.settings)
    purge_catalog(catalog)
    v1 = write_table(catalog, "bronze", "dev", "orders", pa.table({"id": [1, 2], "amount": [1.5, 2.5]}))
    prefix = s3_ctx.settings.warehouse.removeprefix("s3://lake/")
    assert v1.metadata_location.startswith(f"s3://lake/{prefix}/bronze_dev/orders/metadata/")
    v2 = write_table(catalog, "bronze", "dev", "orders", pa.table({"id": [3], "amount": [3.5], "note": ["x"]}),
                     mode="append")
    write_table(catalog, "bronze", "prod", "orders", pa.table({"id": [100]}))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix=prefix)["Contents"]]
    assert any(k.startswith(f"{prefix}/bronze_dev/orders/data/") and k.endswith(".parquet") for k in keys)
    assert read_table(catalog, "bronze", "dev", "orders", snapshot_id=v1.snapshot_id).num_rows == 2
    assert sorted(read_table(catalog, "bronze", "dev", "orders").column("id").to_pylist()) == [1, 2, 3]

    with duck.connect(catalog, "dev", sandbox=True) as lake:
        assert lake.con.sql("SELECT sum(id) FROM bronze.orders").fetchone() == (6,)
        assert lake.con.sql(f"SELECT count(*) FROM at_snapshot('bronze.orders', {v1.snapshot_id})").fetchone() == (2,)
        with pytest.raises(Exception, match="disabled by configuration"):
            lake.con.sql("SELECT * FROM read_csv('s3://other/secret.csv')").fetchall()
        assert lake.reads("SELECT * FROM bronze.orders") == [{"table": "bronze.orders",
                                                               "snapshot_id": v2.snapshot_id}]

    out = sql.run_query(s3_ctx, SYSTEM, "SELECT id, note FROM bronze.orders ORDER BY id", env="dev")
    assert out["rows"] == [[1, None], [2, None], [3, "x"]]
    assert out["snapshot_ids"] == [{"table": "bronze.orders", "snapshot_id": v2.snapshot_id}]
    assert sql.run_query(s3_ctx, SYSTEM, "SELECT id FROM bronze.orders", env="prod")["rows"] == [[100]]


def test_a_worker_writes_an_s3_warehouse_through_the_rest_catalog_with_its_own_settings(
        s3_ctx: Context, s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's lease catalog: metadata over ``/iceberg`` (``/v1/config`` tells where the warehouse
    is, never a key), data files with the worker's own ``LAKEHOUSE_S3_*`` settings (no AWS_* needed)."""
    from fastapi.testclient import TestClient

    from lakehouse.api.app import create_app
    from lakehouse.cli.server import Running
    from lakehouse.lake.lease import RestLake
    from lakehouse.services import auth
    from lakehouse.worker.client import ExecutorClient
    from tests.e2e.harness import free_port

    purge_catalog(catalog_for(s3_ctx.settings))
    endpoint = s3.meta.endpoint_url
    auth.create_user(s3_ctx, "eng", "engineer", None)
    auth.create_user(s3_ctx, "exec", "executor", None)
    eng, exe = auth.create_token(s3_ctx, "eng"), auth.create_token(s3_ctx, "exec")
    with TestClient(create_app(s3_ctx, reaper=False)) as c:
        config = c.get("/iceberg/v1/config", headers={"Authorization": f"Bearer {eng}"}).json()
        run = c.post("/ops/runs", headers={"Authorization": f"Bearer {eng}"}, json={
            "spec_slug": "s3", "git_sha": "0" * 7, "phases": [{"name": "p", "type": "noop"}]}).json()
    assert config["defaults"]["s3.endpoint"] == endpoint
    assert not {"s3.access-key-id", "s3.secret-access-key", "s3.session-token"} & set(config["defaults"])
    # no AWS_* in this process any more: the control plane and the worker each have their own settings
    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.delenv(var)
    for key, value in {"s3_endpoint": endpoint, "s3_access_key_id": "test-key",
                       "s3_secret_access_key": "test-secret"}.items():
        setattr(s3_ctx.settings, key, value)
    worker_settings = Settings(home=s3_ctx.settings.home, warehouse=s3_ctx.settings.warehouse, s3_endpoint=endpoint,
                               s3_access_key_id="test-key", s3_secret_access_key="test-secret")
    with Running(s3_ctx, "127.0.0.1", free_port(), workers=0, scheduler=False) as running:
        (claim,) = ExecutorClient(running.base, exe).claim("w", ["noop"], run_id=run["run_id"])
        cat = RestLake(running.base, exe, worker_settings).catalog(claim["run_id"], claim["lease_token"], "default")
        written = write_table(cat, "silver", "dev", "orders", pa.table({"id": [7, 8]}))
        assert sorted(read_table(cat, "silver", "dev", "orders").column("id").to_pylist()) == [7, 8]
    assert written.metadata_location.startswith(s3_ctx.settings.warehouse + "/silver_dev/orders/metadata/")
    assert read_table(catalog_for(s3_ctx.settings), "silver", "dev", "orders").num_rows == 2
