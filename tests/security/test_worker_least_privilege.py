"""A worker holds its executor token, its leases and per-lease connection secrets — never the metadata
database URL nor the Fernet key (issue 10 item 3). It reaches the catalog over ``/iceberg`` under the
lease of the phase it runs, and a lease reaches one run's workspace and environment, for as long as
it is held. Real control plane (uvicorn, as ``lakehouse up`` starts it) and real worker processes."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from cryptography.fernet import Fernet
from pyiceberg.exceptions import ForbiddenError, NoSuchNamespaceError, NoSuchTableError, RESTError
from sqlalchemy.engine import make_url

from lakehouse.cli.server import Running, worker_environment
from lakehouse.connectors.odoo_seed import seed
from lakehouse.domain.principal import SYSTEM
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for, close_catalogs
from lakehouse.lake.lease import RestLake
from lakehouse.services import auth, connections, pipelines, protocol, runs
from lakehouse.services.context import Context
from lakehouse.worker.client import ExecutorClient
from tests.e2e.harness import free_port
from tests.security.conftest import Attack

PIPELINES_DIR = Path(__file__).parents[2] / "pipelines"
KEY = Fernet.generate_key().decode()
ROWS = pa.table({"n": [1, 2, 3]})


def _raw_environ(pid: int, timeout: float = 10) -> bytes:
    """The process's environment block. Popen returns once the child's exec closed its pipe, which is
    before the kernel has laid out the new environment: until then the file reads empty."""
    deadline = time.monotonic() + timeout
    while not (raw := Path(f"/proc/{pid}/environ").read_bytes()):
        assert time.monotonic() < deadline, f"process {pid} shows no environment"
        time.sleep(0.01)
    return raw


def _environ(pid: int) -> dict[str, str]:
    raw = _raw_environ(pid)
    return dict(item.decode().partition("=")[::2] for item in raw.split(b"\0") if item)


@pytest.fixture
def plane_env(ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    """This process's environment as an operator's shell would have it for ``lakehouse up``: the
    database URL and the key included (what must not reach the workers)."""
    s = ctx.settings
    sources = tmp_path / "sources"
    sources.mkdir()
    source = f"sqlite:///{sources / 'odoo.db'}"
    seed(source, 1)
    for key, value in {"LAKEHOUSE_HOME": str(s.home), "LAKEHOUSE_WAREHOUSE": s.warehouse,
                       "LAKEHOUSE_DATABASE_URL": s.database_url, "LAKEHOUSE_SECRET_KEY": KEY,
                       "LAKEHOUSE_ODOO_URL": source, "LAKEHOUSE_SQLITE_SOURCE_DIRS": f'["{sources}"]'}.items():
        monkeypatch.setenv(key, value)
    specs = tmp_path / "pipelines"
    shutil.copytree(PIPELINES_DIR, specs)
    s.pipelines_dir = specs
    yield ctx
    close_catalogs()


def _wait(ctx: Context, run_id: str, worker: Any, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"the worker exited with {worker.returncode}"
        run = runs.get_run(ctx, run_id, SYSTEM)
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish")


def test_worker_environment_drops_the_database_url_and_the_key() -> None:
    env = worker_environment("tok", {"LAKEHOUSE_DATABASE_URL": "postgresql://u:pw@db/meta", "PATH": "/bin",
                                     "LAKEHOUSE_SECRET_KEY": KEY, "lakehouse_secret_key": KEY})
    assert env == {"PATH": "/bin", "LAKEHOUSE_TOKEN": "tok"}


def test_workers_spawned_by_up_have_no_database_url_or_key_and_run_the_medallion(plane_env: Context) -> None:
    ctx = plane_env
    with Running(ctx, "127.0.0.1", free_port(), workers=1, scheduler=False) as running:
        (proc,) = running.procs
        environ = _environ(proc.pid)
        assert "LAKEHOUSE_DATABASE_URL" not in environ and "LAKEHOUSE_SECRET_KEY" not in environ
        raw = _raw_environ(proc.pid)
        assert ctx.settings.database_url.encode() not in raw and KEY.encode() not in raw
        assert environ["LAKEHOUSE_TOKEN"]
        # …and that worker, with no way to the metadata database, reads and writes Iceberg tables
        finals = []
        for name, params in (("odoo_ingest_bronze", None), ("bronze_to_silver", None),
                             ("silver_to_gold", {"as_of": "2025-12-31"})):
            run, _ = pipelines.start_run(ctx, SYSTEM, name, "dev", params)
            finals.append(_wait(ctx, run["run_id"], proc))
            assert finals[-1]["status"] == "succeeded", (name, finals[-1]["error"])
        assert proc.poll() is None
    catalog = catalog_for(ctx.settings)
    gold = lake_tables.read_table(catalog, "gold", "dev", "revenue_monthly")
    assert gold.num_rows > 0
    silver = {r.sql_name for r in lake_tables.list_tables(catalog, env="dev", layer="silver")}
    assert silver, "bronze_to_silver read bronze and wrote silver through the REST catalog"
    executors = {p["executor_id"] for f in finals for p in f["phases"]}
    assert executors == {f"local-{os.getpid()}-1"}  # every phase ran in the spawned worker


@pytest.fixture
def served(attack: Attack) -> Iterator[tuple[Attack, str]]:
    """The attack install behind a real HTTP server (pyiceberg's REST client speaks requests)."""
    with Running(attack.ctx, "127.0.0.1", free_port(), workers=0, scheduler=False) as running:
        yield attack, running.base
    close_catalogs()


def _lease(attack: Attack, base: str, workspace: str, who: str = "executor") -> tuple[ExecutorClient, dict[str, Any]]:
    run = attack.run(f"{workspace}_engineer", workspace, [{"name": "p", "type": "noop"}], environment="dev")
    assert run["status_code"] == 201, run
    client = ExecutorClient(base, attack.tokens[who])
    (claim,) = client.claim(f"w-{who}", ["noop"], run_id=str(run["run_id"]))
    return client, claim


def test_a_lease_catalog_reaches_its_runs_workspace_only_and_only_while_held(served: tuple[Attack, str]) -> None:
    attack, base = served
    admin_catalog = catalog_for(attack.ctx.settings)
    lake_tables.write_table(admin_catalog, "gold", "dev", "secret", pa.table({"s": ["victim-4711"]}),
                            workspace="alpha")
    client, claim = _lease(attack, base, "beta")
    lake = RestLake(base, attack.tokens["executor"])
    cat = lake.catalog(claim["run_id"], claim["lease_token"], "beta")
    # its own workspace: write, list (with metadata locations, for DuckDB), read
    written = lake_tables.write_table(cat, "gold", "dev", "out", ROWS, workspace="beta")
    assert written.identifier == "beta__gold_dev.out" and written.rows == 3
    refs = lake_tables.list_tables(cat, env="dev", workspace="beta")
    assert [(r.workspace, r.sql_name) for r in refs] == [("beta", "gold.out")]
    assert refs[0].metadata_location == lake_tables.load(admin_catalog, "gold", "dev", "out", "beta").metadata_location
    assert lake_tables.read_table(cat, "gold", "dev", "out", workspace="beta").equals(ROWS)
    # another workspace: refused by the client library, and by the server when asked anyway
    with pytest.raises(PermissionError):
        lake_tables.load(cat, "gold", "dev", "secret", "alpha")
    assert lake_tables.list_tables(cat, env="dev", workspace="alpha") == []
    stolen = lake.catalog(claim["run_id"], claim["lease_token"], "alpha")
    with pytest.raises(ForbiddenError):
        stolen.load_table(("gold_dev", "secret"))
    with pytest.raises(ForbiddenError):
        stolen.list_namespaces()
    with pytest.raises(ForbiddenError):
        stolen.create_table(("gold_dev", "planted"), schema=ROWS.schema)
    # another environment of its own workspace: not there
    with pytest.raises((NoSuchTableError, NoSuchNamespaceError)):
        cat.load_table(("gold_prod", "out"))
    with pytest.raises(NoSuchNamespaceError):
        cat.list_tables("gold_prod")
    # once the lease has ended: nothing, not even its own table
    client.complete(claim["run_id"], claim["lease_token"], {})
    with pytest.raises(ForbiddenError):
        cat.load_table(("gold_dev", "out"))
    with pytest.raises(ForbiddenError):
        lake_tables.write_table(cat, "gold", "dev", "out", ROWS, mode="append", workspace="beta")
    with pytest.raises(ForbiddenError):
        lake_tables.list_tables(cat, env="dev", workspace="beta")
    after = lake_tables.load(admin_catalog, "gold", "dev", "out", "beta")
    assert after.metadata_location == written.metadata_location  # the late append committed nothing
    assert not lake_tables.table_exists(admin_catalog, "gold", "dev", "planted", "alpha")


def test_a_lease_catalog_with_a_forged_lease_or_another_token_gets_nothing(served: tuple[Attack, str]) -> None:
    attack, base = served
    _client, claim = _lease(attack, base, "beta")
    forged = RestLake(base, attack.tokens["executor"])
    with pytest.raises(ForbiddenError):  # the first call (config) already needs a held lease
        forged.catalog(claim["run_id"], "not-the-lease", "beta")
    people = RestLake(base, attack.tokens["alpha_engineer"])  # a member of alpha, with beta's lease
    with pytest.raises(RESTError, match="no warehouse 'beta'"):  # beta answers as if it did not exist
        people.catalog(claim["run_id"], claim["lease_token"], "beta")


def test_a_connection_naming_the_metadata_database_is_never_handed_out(attack: Attack) -> None:
    url = make_url(attack.ctx.settings.database_url)
    engineer = auth.authenticate_token(attack.ctx, attack.tokens["beta_engineer"])
    if url.get_backend_name() == "sqlite":
        type_, config = "sqlite", {"path": url.database}
    else:
        type_, config = "postgres", {"host": url.host or "127.0.0.1", "port": str(url.port or 5432),
                                     "database": url.database, "user": url.username or "postgres"}
    try:
        connections.create(attack.ctx, engineer, workspace="beta", environment="dev", name="meta", type_=type_,
                           config=config, secrets={})
    except Exception as exc:  # refused when stored already (a SQLite file outside the source folders)
        assert "metadata" in str(exc) or "folder" in str(exc) or "allowed" in str(exc), exc
        return
    spec = {"name": "steal", "version": 1, "sources": {"src": {"kind": type_, "connection": "meta"}},
            "ingest": {"source": "src", "groups": {"g": ["api_tokens"]}}}
    run = attack.run("beta_engineer", "beta", [{"name": "ingest", "type": "ingest", "params": {"group": "g"}}],
                     {"spec": spec})
    assert run["status_code"] == 201, run
    (claim,) = protocol.claim(attack.ctx, auth.authenticate_token(attack.ctx, attack.tokens["executor"]), "w",
                              ["ingest"], run_id=str(run["run_id"]))
    r = attack.client.post(f"/ops/runs/{run['run_id']}/connections/meta", headers=attack.headers("executor"),
                           json={"lease_token": claim["lease_token"]})
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "metadata_database"
    assert "secrets" not in r.text
