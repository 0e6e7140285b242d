"""Connection probes: really connect to a system and answer one line (``lakehouse connections test``,
the Control Room's Test button). services/connections.py keeps the rules (who may test, the egress
check, redaction, the audit record); these functions only connect.

Each probe gets ``where`` from ``services.connections.check_target`` and connects to that checked address
(or opens that real path), never re-resolving a name the check saw (see connectors/netpolicy.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lakehouse.connectors.netpolicy import Target

Where = Target | Path | None


def probe(type_: str, config: dict[str, Any], secrets: dict[str, str], timeout_s: float, where: Where) -> str:
    """Connect to the system and return what was found; raise with a clear message when it fails."""
    return str(_PROBES[type_](config, secrets, timeout_s, where))


def _target(where: Where) -> Target:
    if not isinstance(where, Target):
        raise ValueError("the connection has no checked network target")
    return where


def _probe_postgres(c: dict[str, Any], s: dict[str, str], t: float, where: Where) -> str:
    import psycopg

    # host names the server for TLS and authentication; hostaddr is where the socket goes (checked)
    with psycopg.connect(host=c["host"], hostaddr=_target(where).address, port=int(c["port"]),
                         dbname=c["database"], user=c["user"], password=s.get("password"),
                         sslmode=c.get("sslmode", "prefer"), connect_timeout=max(1, int(t))) as pg:
        version = pg.execute("SHOW server_version").fetchone()
        tables = pg.execute("SELECT count(*) FROM information_schema.tables "
                            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')").fetchone()
    return f"connected to PostgreSQL {version[0] if version else '?'}; {tables[0] if tables else 0} tables"


def _probe_sqlite(c: dict[str, Any], s: dict[str, str], t: float, where: Where) -> str:
    import sqlite3

    if not isinstance(where, Path):
        raise ValueError("the SQLite path was not checked")
    if not where.is_file():
        raise FileNotFoundError(f"no SQLite file at {c['path']}")
    db = sqlite3.connect(f"{where.as_uri()}?mode=ro", uri=True, timeout=t)
    try:
        n = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    finally:
        db.close()
    return f"opened {where.name} read-only; {n} tables"


def _probe_s3(c: dict[str, Any], s: dict[str, str], t: float, where: Where) -> str:
    import botocore.session
    from botocore.config import Config

    _target(where)  # checked against the allow-list; botocore resolves the name itself (signing needs it)
    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=c.get("endpoint_url") or None, region_name=c.get("region") or "us-east-1",
        aws_access_key_id=s.get("access_key_id"), aws_secret_access_key=s.get("secret_access_key"),
        config=Config(connect_timeout=t, read_timeout=t, retries={"max_attempts": 1}))
    answer = client.list_objects_v2(Bucket=c["bucket"], MaxKeys=5)
    return f"bucket {c['bucket']} is readable; {answer.get('KeyCount', 0)} object(s) in the first page"


def _http(url: str, t: float, where: Where, method: str = "GET", headers: dict[str, str] | None = None,
          json: Any = None) -> Any:
    """One request to ``url``, sent to the checked address (Host header and TLS name stay the URL's)."""
    import httpx

    target = _target(where)
    u = httpx.URL(url)
    pinned = u.copy_with(host=target.address)
    with httpx.Client(timeout=t, follow_redirects=False) as client:
        request = client.build_request(method, pinned, headers={**(headers or {}), "Host": u.netloc.decode()},
                                       json=json, extensions={"sni_hostname": u.host})
        return client.send(request)


def _probe_trino(c: dict[str, Any], s: dict[str, str], t: float, where: Where) -> str:
    scheme = c.get("http_scheme", "http")
    auth = None
    if s.get("password"):
        import base64

        auth = {"Authorization": "Basic " + base64.b64encode(f"{c['user']}:{s['password']}".encode()).decode()}
    r = _http(f"{scheme}://{c['host']}:{c['port']}/v1/info", t, where, headers=auth)
    r.raise_for_status()
    info = r.json()
    state = "starting" if info.get("starting") else "ready"
    return f"Trino {info.get('nodeVersion', {}).get('version', '?')} is {state}"


def _probe_spark(c: dict[str, Any], s: dict[str, str], t: float, where: Where) -> str:
    import socket
    from urllib.parse import urlparse

    master = c["master"]
    if master.startswith("local"):
        return "local master: Spark runs inside the worker process"
    u = urlparse(master)
    target = _target(where)
    with socket.create_connection((target.address, target.port), timeout=t):
        pass
    return f"{u.scheme} endpoint {target.host}:{target.port} accepts connections"


def _probe_smtp(c: dict[str, Any], s: dict[str, str], t: float, where: Where) -> str:
    import smtplib

    target = _target(where)
    smtp = smtplib.SMTP(timeout=t)
    smtp._host = c["host"]  # type: ignore[attr-defined]  # STARTTLS checks the name; the socket goes to the address
    smtp.connect(target.address, int(c["port"]))
    with smtp:
        code, _banner = smtp.ehlo()
        if str(c.get("starttls", "yes")).lower() in ("yes", "true", "1"):
            smtp.starttls()
            smtp.ehlo()
        if c.get("user") and s.get("password"):
            smtp.login(c["user"], s["password"])
    return f"SMTP server answered {code}" + (" and accepted the login" if c.get("user") and s.get("password") else "")


def _probe_webhook(c: dict[str, Any], s: dict[str, str], t: float, where: Where) -> str:
    headers = {"Authorization": s["auth_header"]} if s.get("auth_header") else None
    r = _http(c["url"], t, where, "POST", headers,
              {"type": "lakehouse.connection_test", "message": "test from Lakehouse"})
    if r.status_code >= 400:
        raise ConnectionError(f"the webhook answered HTTP {r.status_code}")
    return f"the webhook answered HTTP {r.status_code}"


_PROBES = {"postgres": _probe_postgres, "sqlite": _probe_sqlite, "s3": _probe_s3, "trino": _probe_trino,
           "spark": _probe_spark, "smtp": _probe_smtp, "webhook": _probe_webhook}
