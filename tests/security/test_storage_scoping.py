"""Storage credentials per lease: a worker reaches only its run's workspace's files on S3.

S3 here is moto's server in a subprocess with its access control on (``/moto-api/reset-auth`` 0 after
the setup): every request must be signed by a known key, and an assumed role's credentials get only
what the role's IAM policy allows (moto enforces role policies on object requests; it does not enforce
session policies, ``s3:prefix`` conditions on listing, nor the source of a copy — so these tests use
one role per workspace and attack by object path). The control plane holds the vending identity; the
worker holds no S3 key at all and gets short-lived credentials for its lease from the Iceberg REST
catalog (``X-Iceberg-Access-Delegation: vended-credentials``).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest
from pyiceberg.exceptions import ForbiddenError
from pyiceberg.io import load_file_io

from lakehouse.cli.server import Running
from lakehouse.lake import duck
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for, close_catalogs, duckdb_s3_secret
from lakehouse.lake.lease import EXPIRES_AT_MS, RestLake, storage_properties_for_worker
from lakehouse.services import storage_vending
from lakehouse.settings import Settings
from tests.e2e.harness import free_port
from tests.security.conftest import Attack

ACCOUNT = "123456789012"  # moto's
ROWS = pa.table({"n": [1, 2, 3]})
VICTIM = pa.table({"secret": ["victim-row-4711"]})
DENIED = r"(?i)denied|forbidden"
_tags = itertools.count(1)


@dataclass
class Moto:
    endpoint: str
    key_id: str  # the vending identity's (the control plane's) key
    secret: str

    def client(self, service: str, **creds: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            **(creds or {"aws_access_key_id": self.key_id, "aws_secret_access_key": self.secret}))


@pytest.fixture(scope="module")
def iam_s3() -> Iterator[Moto]:
    """moto's server with authentication and IAM policies enforced; a ``vendor`` user (all rights) and a
    ``lake`` bucket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        boot = Moto(endpoint, "boot", "boot")  # any key works until access control is turned on
        iam = boot.client("iam")
        iam.create_user(UserName="vendor")
        iam.put_user_policy(UserName="vendor", PolicyName="all", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="vendor")["AccessKey"]
        boot.client("s3").create_bucket(Bucket="lake")
        on = urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
                                    headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(on, timeout=5).close()
        yield Moto(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _workspace_role(moto: Moto, name: str, warehouse: str, workspace: str) -> None:
    """What an admin provisions per workspace: a role the vendor may assume, granting objects under the
    workspace's medallion prefixes only (docs/security.md)."""
    iam = moto.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/vendor"}}]}
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    key = warehouse.removeprefix("s3://lake/")
    resources = [f"arn:aws:s3:::lake/{key}/{workspace}__{layer}_{env}/*"
                 for layer in ("bronze", "silver", "gold") for env in ("dev", "stage", "prod")]
    resources.append(f"arn:aws:s3:::lake/{key}/_staging/{workspace}/*")  # its runs' staged outputs
    listing = [r.removeprefix("arn:aws:s3:::lake/") for r in resources]  # (moto ignores the condition)
    iam.put_role_policy(RoleName=name, PolicyName="tables", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": resources, "Action": [
            "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]},
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::lake",
             "Condition": {"StringLike": {"s3:prefix": listing}}}]}))


@pytest.fixture
def settings(db_url: str, tmp_path: Path, iam_s3: Moto, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The control plane's settings: an S3 warehouse, its own (vending) key, a role per workspace."""
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    tag = f"t{next(_tags)}-{os.getpid()}"
    warehouse = f"s3://lake/{tag}"
    for ws in ("alpha", "beta"):
        _workspace_role(iam_s3, f"{tag}-{ws}", warehouse, ws)
    yield Settings(home=tmp_path / "home", database_url=db_url, lease_ttl_s=30, retry_base_s=0.01,
                   retry_max_s=0.05, warehouse=warehouse, s3_endpoint=iam_s3.endpoint, s3_region="us-east-1",
                   s3_access_key_id=iam_s3.key_id, s3_secret_access_key=iam_s3.secret,
                   s3_vending_role_arn=f"arn:aws:iam::{ACCOUNT}:role/{tag}-{{workspace}}",
                   s3_vending_duration_s=900)
    storage_vending.clear_cache()


@pytest.fixture
def served(attack: Attack) -> Iterator[tuple[Attack, str]]:
    with Running(attack.ctx, "127.0.0.1", free_port(), workers=0, scheduler=False) as running:
        yield attack, running.base
    close_catalogs()


def _lease(attack: Attack, base: str, workspace: str) -> dict[str, Any]:
    from lakehouse.worker.client import ExecutorClient

    run = attack.run(f"{workspace}_engineer", workspace, [{"name": "p", "type": "noop"}], environment="dev")
    assert run["status_code"] == 201, run
    run_id = str(run["run_id"])
    (claim,) = ExecutorClient(base, attack.tokens["executor"]).claim(f"w-{run_id}", ["noop"], run_id=run_id)
    return dict(claim)


def _worker_settings(attack: Attack, tmp_path: Path) -> Settings:
    """A worker's settings: where the warehouse is, no key (and no AWS_* variable either)."""
    s = attack.ctx.settings
    return Settings(home=tmp_path / "worker", warehouse=s.warehouse, s3_endpoint=s.s3_endpoint, s3_region="us-east-1")


def _files(table: Any) -> list[str]:
    return [task.file.file_path for task in table.scan().plan_files()] + [table.metadata_location]


def test_a_worker_without_s3_keys_reaches_its_workspaces_files_and_is_denied_anothers_by_path(
        served: tuple[Attack, str], tmp_path: Path) -> None:
    attack, base = served
    admin = catalog_for(attack.ctx.settings)
    lake_tables.write_table(admin, "gold", "dev", "secret", VICTIM, workspace="beta")
    victim = _files(lake_tables.load(admin, "gold", "dev", "secret", "beta"))
    claim = _lease(attack, base, "alpha")
    worker = _worker_settings(attack, tmp_path)
    assert "s3.access-key-id" not in storage_properties_for_worker(worker)  # the worker holds no S3 key
    cat = RestLake(base, attack.tokens["executor"], worker).catalog(claim["run_id"], claim["lease_token"], "alpha")
    vended = cat.properties
    assert vended["s3.session-token"] and vended["s3.access-key-id"] != attack.ctx.settings.s3_access_key_id

    # its own workspace: write through the catalog, read back with pyiceberg and with DuckDB
    written = lake_tables.write_table(cat, "gold", "dev", "out", ROWS, workspace="alpha")
    assert written.identifier == "alpha__gold_dev.out"
    assert lake_tables.read_table(cat, "gold", "dev", "out", workspace="alpha").equals(ROWS)
    with duck.connect(cat, "dev", workspace="alpha") as con:
        assert con.sql("SELECT sum(n) FROM gold.out").fetchone() == (6,)
    own = _files(lake_tables.load(admin, "gold", "dev", "out", "alpha"))

    # another workspace's files, by path, with the very credentials the lease got: refused
    io = load_file_io(vended, victim[0])
    assert io.new_input(own[0]).open().read(4) == b"PAR1"
    for path in victim:
        with pytest.raises(OSError, match=DENIED):
            io.new_input(path).open().read()
    planted = io.new_output(victim[0].rsplit("/", 1)[0] + "/planted.parquet")
    with pytest.raises(OSError, match=DENIED), planted.create(overwrite=True) as out:
        out.write(b"PAR1")
    with pytest.raises(OSError, match=DENIED):
        io.delete(victim[0])
    raw = duck.new_connection("httpfs")
    try:
        raw.execute(str(duckdb_s3_secret(vended)))
        assert raw.sql(f"SELECT count(*) FROM read_parquet('{own[0]}')").fetchone() == (3,)
        with pytest.raises(duckdb.Error, match="403"):
            raw.sql(f"SELECT * FROM read_parquet('{victim[0]}')").fetchall()
    finally:
        raw.close()
    # the files are there: the control plane's own key reads them (so the refusals above are the wall)
    assert load_file_io(admin.properties, victim[0]).new_input(victim[0]).open().read(4) == b"PAR1"


def test_vended_credentials_go_to_leases_only_and_are_shared_per_workspace(served: tuple[Attack, str],
                                                                          tmp_path: Path) -> None:
    attack, base = served
    lake_tables.write_table(catalog_for(attack.ctx.settings), "gold", "dev", "t", ROWS, workspace="alpha")
    one, two = _lease(attack, base, "alpha"), _lease(attack, base, "alpha")
    beta = _lease(attack, base, "beta")
    url = f"{base}/iceberg/v1/alpha/namespaces/gold_dev/tables/t"
    wants = {"X-Iceberg-Access-Delegation": "vended-credentials"}

    def load(who: str, claim: dict[str, Any] | None, headers: dict[str, str]) -> dict[str, Any]:
        lease = {"X-Lakehouse-Lease": f"{claim['run_id']}:{claim['lease_token']}"} if claim else {}
        r = httpx.get(url, headers={**attack.headers(who), **lease, **headers}, timeout=60)
        assert r.status_code == 200, r.text
        return dict(r.json())

    answer = load("executor", one, wants)
    wh = attack.ctx.settings.warehouse
    assert [c["prefix"] for c in answer["storage-credentials"]] == [
        f"{wh}/alpha__bronze_dev/", f"{wh}/alpha__silver_dev/", f"{wh}/alpha__gold_dev/", f"{wh}/_staging/alpha/dev/"]
    key = answer["config"]["s3.access-key-id"]
    assert answer["storage-credentials"][0]["config"]["s3.access-key-id"] == key
    assert int(answer["config"][EXPIRES_AT_MS]) / 1000 > time.time() + 600
    # a second lease of the same workspace and environment: the same credentials (one STS call)
    assert load("executor", two, wants)["config"]["s3.access-key-id"] == key
    # not asked for, or asked by a person (even an admin): nothing vended
    assert "storage-credentials" not in load("executor", one, {})
    for who in ("alpha_engineer", "admin"):
        answer = load(who, None, wants)
        assert "storage-credentials" not in answer and "s3.access-key-id" not in answer["config"]
    # beta's lease gets beta's own credentials, which do not open alpha's files
    worker = _worker_settings(attack, tmp_path)
    cat = RestLake(base, attack.tokens["executor"], worker).catalog(beta["run_id"], beta["lease_token"], "beta")
    assert cat.properties["s3.access-key-id"] != key
    alpha_file = _files(lake_tables.load(catalog_for(attack.ctx.settings), "gold", "dev", "t", "alpha"))[0]
    with pytest.raises(OSError, match=DENIED):
        load_file_io(cat.properties, alpha_file).new_input(alpha_file).open().read()
    # credentials near their end are asked for again; a lease that has ended gets none
    cat.properties = {**cat.properties, EXPIRES_AT_MS: str(int(time.time() * 1000))}
    cat.refresh_credentials()
    assert int(cat.properties[EXPIRES_AT_MS]) / 1000 > time.time() + 300
    from lakehouse.worker.client import ExecutorClient

    ExecutorClient(base, attack.tokens["executor"]).complete(beta["run_id"], beta["lease_token"], {})
    cat.properties = {**cat.properties, EXPIRES_AT_MS: "0"}
    with pytest.raises(ForbiddenError):
        cat.refresh_credentials()


# --- staging: a worker without S3 keys stages and publishes with its lease's credentials -------------


def _staging_run(attack: Attack, workspace: str) -> str:
    spec = {"name": "staged", "version": 1, "transforms": [{"name": "t", "sql": "t.sql", "output": "gold.staged"}]}
    run = attack.run(f"{workspace}_engineer", workspace, [{"name": "transform", "type": "transform"},
                                                          {"name": "publish", "type": "publish"}],
                     {"spec": spec, "sql": {"t": "SELECT n FROM range(1, 4) t(n)"}}, environment="dev")
    assert run["status_code"] == 201, run
    return str(run["run_id"])


def test_a_worker_without_s3_keys_stages_and_publishes_and_is_denied_another_workspaces_staging(
        served: tuple[Attack, str], tmp_path: Path) -> None:
    from pyarrow import fs as pafs

    from lakehouse.domain.principal import SYSTEM
    from lakehouse.handlers import staging
    from lakehouse.services import runs
    from lakehouse.worker.client import ExecutorClient
    from lakehouse.worker.loop import Worker
    from lakehouse.worker.registry import load_handlers

    attack, base = served
    s = attack.ctx.settings
    worker = _worker_settings(attack, tmp_path)
    assert "s3.access-key-id" not in storage_properties_for_worker(worker)  # the worker holds no S3 key
    run_id = _staging_run(attack, "alpha")
    lake = RestLake(base, attack.tokens["executor"], worker)
    client = ExecutorClient(base, attack.tokens["executor"])
    try:
        Worker(client, executor_id="keyless", handlers=load_handlers(), wait_s=0, once=True, settings=worker,
               lake=lake).run()
    finally:
        client.close()
    run = runs.get_run(attack.ctx, run_id, SYSTEM)
    assert run["status"] == "succeeded", run["error"]
    staged = run["phases"][0]["output_manifest"]["outputs"]["gold.staged"]["staged"]
    key = s.warehouse.removeprefix("s3://")
    assert staged == f"{key}/_staging/alpha/dev/{run_id}/gold.staged.parquet"
    admin = catalog_for(s)
    published = lake_tables.read_table(admin, "gold", "dev", "staged", workspace="alpha")
    assert published.column("n").to_pylist() == [1, 2, 3]
    own_fs, _ = staging._fs(s)  # the control plane's key: the publish phase cleared the staging folder
    assert own_fs.get_file_info(staged).type == pafs.FileType.NotFound

    # the credentials of an alpha lease reach alpha's staging prefix, and not beta's
    claim = _lease(attack, base, "alpha")
    vended = lake.catalog(claim["run_id"], claim["lease_token"], "alpha").vended_storage()
    assert vended is not None and vended["s3.session-token"]
    fs, _ = staging._fs(worker, vended)
    mine = f"{key}/_staging/alpha/dev/{claim['run_id']}/gold.x.parquet"
    with fs.open_output_stream(mine) as out:
        out.write(b"PAR1")
    with fs.open_input_file(mine) as f:
        assert f.read(4) == b"PAR1"
    theirs = f"{key}/_staging/beta/dev/r-beta/gold.secret.parquet"
    with own_fs.open_output_stream(theirs) as out:
        out.write(b"victim-row-4711")
    for path in (theirs, f"{key}/_staging/r-old/gold.secret.parquet"):
        with pytest.raises(OSError, match=DENIED), fs.open_input_file(path) as f:
            f.read()
        with pytest.raises(OSError, match=DENIED), fs.open_output_stream(path) as out:
            out.write(b"planted")
    with pytest.raises(OSError, match=DENIED):
        fs.delete_file(theirs)
    with own_fs.open_input_file(theirs) as f:  # still there, untouched: the refusals above are the wall
        assert f.read() == b"victim-row-4711"
