"""Connections to the systems the lakehouse reads from and writes to, with secrets encrypted at rest.

Secrets are write-only: they go in through :func:`create`/:func:`update`, are stored as one Fernet
token (key from LAKEHOUSE_SECRET_KEY; several comma-separated keys form a MultiFernet, the first
encrypts) and come out only to the code that connects (:func:`resolve`). Every message that leaves
this module goes through :func:`redact`, so a driver error that echoes a password cannot leak it.

Secrets stay bound to where they were entered for: an edit that changes a *target* field (host, port,
URL, database, path, TLS mode …) must re-enter every stored secret, as GitHub and Grafana require.
Targets are checked against the egress allow-list (``LAKEHOUSE_EGRESS_ALLOW``) and SQLite paths
against ``LAKEHOUSE_SQLITE_SOURCE_DIRS`` when a connection is saved, when its secrets are resolved
and when it is tested; the probes (connectors/probes.py) connect to the address that was checked (see
connectors/netpolicy.py).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from lakehouse.connectors.netpolicy import EgressDenied, EgressPolicy, PathDenied, Target, check_sqlite_path
from lakehouse.connectors.probes import probe
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.services import audit, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, NotFound
from lakehouse.store import connections as store
from lakehouse.store.connections import ConnectionRow
from lakehouse.store.types_public import Connection, IntegrityError

MASK = "•••••"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    required: bool = False
    default: str = ""
    secret: bool = False
    placeholder: str = ""
    target: bool = False  # where (or how) the secrets travel: changing it requires re-entering them


TYPES: dict[str, tuple[str, list[Field]]] = {
    "postgres": ("PostgreSQL (Odoo)", [
        Field("host", "Host", True, "127.0.0.1", target=True), Field("port", "Port", True, "5432", target=True),
        Field("database", "Database", True, target=True), Field("user", "User", True),
        Field("sslmode", "SSL mode", False, "prefer", target=True), Field("password", "Password", secret=True)]),
    "sqlite": ("SQLite file", [Field("path", "Path", True, placeholder="$LAKEHOUSE_HOME/sources/source.db",
                                     target=True)]),
    "s3": ("S3 / MinIO", [
        Field("endpoint_url", "Endpoint URL", placeholder="http://127.0.0.1:9000 (empty for AWS)", target=True),
        Field("region", "Region", False, "us-east-1", target=True), Field("bucket", "Bucket", True, target=True),
        Field("access_key_id", "Access key id", secret=True),
        Field("secret_access_key", "Secret access key", secret=True)]),
    "trino": ("Trino", [
        Field("host", "Host", True, target=True), Field("port", "Port", True, "8080", target=True),
        Field("http_scheme", "Scheme", False, "http", target=True), Field("user", "User", True, "lakehouse"),
        Field("catalog", "Catalog", False, "iceberg"), Field("password", "Password", secret=True),
        Field("read_only_user", "Read-only user (analysts, trino phases)"),
        Field("read_only_password", "Read-only user's password", secret=True)]),
    "spark": ("Spark (master or Spark Connect)", [
        Field("master", "Master URL", True, placeholder="spark://host:7077 or sc://host:15002", target=True)]),
    "smtp": ("SMTP (email alerts)", [
        Field("host", "Host", True, target=True), Field("port", "Port", True, "587", target=True),
        Field("starttls", "STARTTLS (yes/no)", False, "yes", target=True), Field("user", "User"),
        Field("from_address", "From address", True), Field("password", "Password", secret=True)]),
    "webhook": ("Webhook", [
        Field("url", "URL", True, placeholder="https://hooks.example.com/…", target=True),
        Field("format", "Body format (json, or slack for Slack-compatible webhooks)", False, "json"),
        Field("auth_header", "Authorization header value", secret=True),
        Field("signing_secret", "Signing secret (HMAC-SHA256 of alert bodies)", secret=True)]),
}


def fields(type_: str) -> list[Field]:
    if type_ not in TYPES:
        raise InvalidInput(f"unknown connection type {type_!r}; use one of {', '.join(TYPES)}", code="invalid_type")
    return TYPES[type_][1]


# --- where a connection may point ---------------------------------------------------------------------

_REGION_RE = re.compile(r"^[a-z0-9-]{1,40}$")


def sqlite_dirs(ctx: Context) -> list[Path]:
    """The folders a ``sqlite`` connection may point into."""
    home = ctx.settings.home
    return list(ctx.settings.sqlite_source_dirs) or [home / "sources", home / "demo"]


def _url_endpoint(url: str, field: str, label: str) -> tuple[str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise InvalidInput(f"{label} must be an http:// or https:// URL with a host", code="invalid_field",
                           details={"field": field})
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _endpoints(type_: str, config: dict[str, Any]) -> list[tuple[str, int]]:
    """(host, port) of every network destination a connection of ``type_`` sends to."""
    if type_ in ("postgres", "trino", "smtp"):
        return [(str(config["host"]), int(config["port"]))]
    if type_ == "webhook":
        return [_url_endpoint(str(config["url"]), "url", "URL")]
    if type_ == "s3":
        if config.get("endpoint_url"):
            return [_url_endpoint(str(config["endpoint_url"]), "endpoint_url", "Endpoint URL")]
        return [(f"s3.{config.get('region') or 'us-east-1'}.amazonaws.com", 443)]
    if type_ == "spark":
        master = str(config["master"])
        if master.startswith("local"):
            return []
        u = urlsplit(master)
        try:
            port = u.port
        except ValueError:
            port = -1
        if not u.hostname or port == -1:
            raise InvalidInput(f"cannot read host:port from {master!r}", code="invalid_field",
                               details={"field": "master"})
        return [(u.hostname, port or (15002 if u.scheme == "sc" else 7077))]
    return []


def check_target(ctx: Context, type_: str, config: dict[str, Any]) -> Target | Path | None:
    """Where the connection's code may connect: the checked network target (its first one), the real
    path of a SQLite file, or None (nothing to reach). Raises ``egress_denied`` or ``path_not_allowed``
    before anything is opened."""
    try:
        if type_ == "sqlite":
            return check_sqlite_path(str(config["path"]), sqlite_dirs(ctx))
        policy = EgressPolicy.parse(ctx.settings.egress_allow)
        targets = [policy.check(host, port) for host, port in _endpoints(type_, config)]
    except EgressDenied as exc:
        raise InvalidInput(exc.message, code="egress_denied") from None
    except PathDenied as exc:
        raise InvalidInput(exc.message, code="path_not_allowed", details={"field": "path"}) from None
    return targets[0] if targets else None


# --- encryption -------------------------------------------------------------------------------------

def cipher(key_setting: str) -> MultiFernet:
    keys = [k.strip() for k in key_setting.replace("\n", ",").split(",") if k.strip()]
    if not keys:
        raise InvalidInput("LAKEHOUSE_SECRET_KEY is empty", code="no_secret_key")
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError):
        raise InvalidInput("LAKEHOUSE_SECRET_KEY is not a valid Fernet key (32 url-safe base64 bytes)",
                           code="bad_secret_key") from None


def encrypt(ctx: Context, values: dict[str, str]) -> str | None:
    if not values:
        return None
    return cipher(ctx.settings.secret_key).encrypt(orjson.dumps(values)).decode()


def decrypt(ctx: Context, token: str | None) -> dict[str, str]:
    if not token:
        return {}
    try:
        return orjson.loads(cipher(ctx.settings.secret_key).decrypt(token.encode()))  # type: ignore[no-any-return]
    except InvalidToken:
        raise InvalidInput("the connection's secrets cannot be decrypted with LAKEHOUSE_SECRET_KEY",
                           code="secret_key_mismatch") from None


def redact(text: str, secrets: dict[str, str]) -> str:
    for value in sorted(secrets.values(), key=len, reverse=True):
        if value and len(value) >= 3:
            text = text.replace(value, MASK)
    return text


def rotate_key(ctx: Context, new_key: str, actor: Principal) -> int:
    """Re-encrypt every connection's secrets with ``new_key`` (old keys from the settings still decrypt).
    Returns how many rows were re-encrypted. The caller then makes ``new_key`` the primary key."""
    actor.require(Action.ADMIN)
    rotator = MultiFernet([Fernet(new_key.encode()), *cipher(ctx.settings.secret_key)._fernets])
    n = 0
    with ctx.db.write() as conn:
        for conn_id, secrets_enc in store.encrypted_secrets(conn):
            try:
                token = rotator.rotate(secrets_enc.encode()).decode()
            except InvalidToken:
                raise InvalidInput(f"connection {conn_id} cannot be decrypted with the current keys",
                                   code="secret_key_mismatch") from None
            store.set_secrets_enc(conn, conn_id, token)
            n += 1
        audit.record(conn, ctx.clock(), actor, "secrets.rotate_key", "connection", None, None, {"rows": n})
    return n


# --- reading (scoped to the principal's workspaces, like row-level security) --------------------------

def render(row: ConnectionRow) -> dict[str, Any]:
    """The public shape: never the secrets, only which of them are set."""
    return {"id": row.id, "workspace": row.workspace, "environment": row.environment, "name": row.name,
            "type": row.type, "config": row.config, "secrets_set": sorted(row.secret_keys),
            "created_by": row.created_by, "created_at": row.created_at, "updated_at": row.updated_at,
            "last_test_at": row.last_test_at, "last_test_ok": row.last_test_ok,
            "last_test_message": row.last_test_message}


def list_connections(ctx: Context, principal: Principal, environment: str | None = None) -> list[dict[str, Any]]:
    principal.require(Action.CONNECTION_READ)
    with ctx.db.read() as conn:
        return [render(r) for r in store.list_visible(conn, principal.workspace_ids, environment)]


def _get(conn: Connection, principal: Principal, conn_id: int) -> ConnectionRow:
    row = store.get_visible(conn, principal.workspace_ids, conn_id)
    if row is None:
        raise NotFound(f"connection {conn_id} not found", code="connection_not_found")
    return row


def get(ctx: Context, principal: Principal, conn_id: int) -> dict[str, Any]:
    principal.require(Action.CONNECTION_READ)
    with ctx.db.read() as conn:
        return render(_get(conn, principal, conn_id))


def resolve(ctx: Context, principal: Principal, conn_id: int) -> tuple[dict[str, Any], dict[str, str]]:
    """(config, secrets) for code that connects; secrets never go into a response, log or event."""
    principal.require(Action.CONNECTION_READ)
    with ctx.db.read() as conn:
        row = _get(conn, principal, conn_id)
    check_target(ctx, row.type, dict(row.config))  # secrets go out only towards an allowed target
    return dict(row.config), decrypt(ctx, row.secrets_enc)


# --- writing ------------------------------------------------------------------------------------------

def _validate(type_: str, config: dict[str, Any], secrets: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    spec = fields(type_)
    known = {f.name for f in spec}
    unknown = sorted(set(config) - known) + sorted(set(secrets) - known)
    if unknown:
        raise InvalidInput(f"unknown field(s) for {type_}: {', '.join(unknown)}", code="unknown_field")
    leaked = sorted(f.name for f in spec if f.secret and config.get(f.name))
    if leaked:
        raise InvalidInput(f"{', '.join(leaked)} must be given as secrets, not settings", code="secret_in_config")
    clean: dict[str, str] = {}
    for f in spec:
        if f.secret:
            continue
        value = str(config.get(f.name) or "").strip() or f.default
        if f.required and not value:
            raise InvalidInput(f"{f.label} is required", code="missing_field", details={"field": f.name})
        if value:
            clean[f.name] = value
    if "port" in clean and not (clean["port"].isdigit() and 0 < int(clean["port"]) < 65536):
        raise InvalidInput("Port must be a number from 1 to 65535", code="invalid_field", details={"field": "port"})
    if "region" in clean and not _REGION_RE.match(clean["region"]):
        raise InvalidInput("Region uses lowercase letters, digits and -", code="invalid_field",
                           details={"field": "region"})
    if clean.get("format", "json") not in ("json", "slack"):
        raise InvalidInput("Body format must be json or slack", code="invalid_field", details={"field": "format"})
    if clean.get("http_scheme", "http") not in ("http", "https"):
        raise InvalidInput("Scheme must be http or https", code="invalid_field", details={"field": "http_scheme"})
    secret_names = {f.name for f in spec if f.secret}
    bad = sorted(k for k in secrets if k not in secret_names)
    if bad:
        raise InvalidInput(f"{', '.join(bad)} must be given as secrets", code="invalid_field")
    return clean, {k: v for k, v in secrets.items() if v}


def create(ctx: Context, principal: Principal, *, workspace: str, environment: str, name: str, type_: str,
           config: dict[str, Any], secrets: dict[str, str], address: str | None = None) -> dict[str, Any]:
    principal.require(Action.CONNECTION_MANAGE)
    if environment not in ENVIRONMENTS:
        raise InvalidInput(f"environment must be one of {', '.join(ENVIRONMENTS)}", code="invalid_environment")
    if not NAME_RE.match(name):
        raise InvalidInput("names use lowercase letters, digits, _ and - (1-100)", code="invalid_name")
    clean, secret_values = _validate(type_, config, secrets)
    check_target(ctx, type_, clean)
    ws_id = workspaces.resolve_for(ctx, principal, workspace, write=True)
    now = ctx.clock()
    try:
        with ctx.db.write() as conn:
            conn_id = store.insert(conn, workspace_id=ws_id, environment=environment, name=name, type_=type_,
                                   config=clean, secrets_enc=encrypt(ctx, secret_values),
                                   secret_keys=sorted(secret_values), created_by=principal.name, now=now)
            audit.record(conn, now, principal, "connection.create", "connection", name, ws_id,
                         {"type": type_, "environment": environment, "secrets_set": sorted(secret_values)}, address)
    except IntegrityError:
        raise Conflict(f"a connection named {name!r} exists in {workspace}/{environment}",
                       code="connection_exists") from None
    return get(ctx, principal, conn_id)


def _require_reentry(type_: str, old: dict[str, Any], new: dict[str, str], stored: dict[str, str],
                     given: dict[str, str], clear: list[str]) -> None:
    """Refuse to keep a stored secret when the connection now points elsewhere (GitHub, Grafana)."""
    spec = fields(type_)
    moved = [f for f in spec if f.target and str(old.get(f.name) or f.default) != str(new.get(f.name) or f.default)]
    kept = [f for f in spec if f.secret and f.name in stored and f.name not in given and f.name not in clear]
    if moved and kept:
        names = " and ".join(f.label.lower() for f in kept)
        raise InvalidInput(f"re-enter the {names}: the connection now points elsewhere "
                           f"({', '.join(f.label for f in moved)} changed), so stored secrets are not kept",
                           code="secret_reentry_required",
                           details={"fields": [f.name for f in kept], "changed": [f.name for f in moved]})


def update_connection(ctx: Context, principal: Principal, conn_id: int, *, config: dict[str, Any],
                      secrets: dict[str, str], clear: list[str] | None = None,
                      address: str | None = None) -> dict[str, Any]:
    """Change settings; a secret given replaces the stored one, an empty one keeps it, ``clear`` removes.
    Changing a target field (host, port, URL, path …) requires re-entering every stored secret."""
    principal.require(Action.CONNECTION_MANAGE)
    with ctx.db.read() as conn:
        row = _get(conn, principal, conn_id)
    clean, new_secrets = _validate(row.type, config, secrets)
    _require_reentry(row.type, dict(row.config), clean, decrypt(ctx, row.secrets_enc), new_secrets, clear or [])
    check_target(ctx, row.type, clean)  # outside the write transaction: it may resolve a name
    now = ctx.clock()
    with ctx.db.write() as conn:
        row = _get(conn, principal, conn_id)
        stored = decrypt(ctx, row.secrets_enc)
        _require_reentry(row.type, dict(row.config), clean, stored, new_secrets, clear or [])
        merged = {**stored, **new_secrets}
        for k in clear or []:
            merged.pop(k, None)
        store.update_settings(conn, conn_id, config=clean, secrets_enc=encrypt(ctx, merged),
                              secret_keys=sorted(merged), now=now)
        audit.record(conn, now, principal, "connection.update", "connection", row.name, row.workspace_id,
                     {"replaced_secrets": sorted(new_secrets), "cleared_secrets": sorted(clear or [])}, address)
    return get(ctx, principal, conn_id)


def delete_connection(ctx: Context, principal: Principal, conn_id: int, address: str | None = None) -> None:
    principal.require(Action.CONNECTION_MANAGE)
    with ctx.db.write() as conn:
        row = _get(conn, principal, conn_id)
        store.delete_one(conn, conn_id)
        audit.record(conn, ctx.clock(), principal, "connection.delete", "connection", row.name,
                     row.workspace_id, {"type": row.type}, address)


def test_connection(ctx: Context, principal: Principal, conn_id: int, address: str | None = None,
                    timeout_s: float = 5.0) -> dict[str, Any]:
    """Really connect; store and return {ok, message, elapsed_ms}. The message is redacted.
    A target outside the egress allow-list (or a SQLite file outside the allowed folders) is recorded
    as a failed test and refused (``egress_denied``/``path_not_allowed``) before anything is opened."""
    principal.require(Action.CONNECTION_READ)
    with ctx.db.read() as conn:
        row = _get(conn, principal, conn_id)
    config = dict(row.config)
    try:
        where = check_target(ctx, row.type, config)
    except InvalidInput as exc:
        now = ctx.clock()
        with ctx.db.write() as conn:
            store.record_test(conn, conn_id, at=now, ok=False, message=exc.message[:1000])
            audit.record(conn, now, principal, "connection.test", "connection", row.name, row.workspace_id,
                         {"ok": False, "refused": exc.code}, address)
        raise
    secrets = decrypt(ctx, row.secrets_enc)
    started = time.perf_counter()
    try:
        ok, message = True, probe(row.type, config, secrets, timeout_s, where)
    except Exception as exc:  # every driver has its own errors; the message is what the user needs
        ok, message = False, f"{type(exc).__name__}: {exc}".strip()
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    message = redact(message, secrets)[:1000]
    now = ctx.clock()
    with ctx.db.write() as conn:
        store.record_test(conn, conn_id, at=now, ok=ok, message=message)
        audit.record(conn, now, principal, "connection.test", "connection", row.name, row.workspace_id,
                     {"ok": ok}, address)
    return {"ok": ok, "message": message, "elapsed_ms": elapsed_ms}
