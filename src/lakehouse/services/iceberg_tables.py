"""Tables of the Iceberg REST catalog: create (and stage-create), load, commit, multi-table
transactions, drop (and purge), rename, register, metrics.

A commit is computed from the table's current metadata (every requirement of the request checked
against it, then pyiceberg applies the updates), its new metadata file is written, and the catalog row
is swapped from the metadata location it was computed from to the new one (store/iceberg_catalog.py).
When another writer swapped first, the commit is computed again from the new current metadata, up to
:data:`ATTEMPTS` times: a request whose requirements still hold is applied on top of the other
writer's (nothing lost), one whose requirements no longer hold fails with ``CommitFailedException``
(409). A multi-table transaction swaps all its tables in one database transaction, or none.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from lakehouse.domain.roles import Action
from lakehouse.lake.catalog import CATALOG_NAME, catalog_for, check_table_name
from lakehouse.services import audit
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from lakehouse.services.iceberg_rest import Scope, require_namespace, table_name
from lakehouse.store import iceberg_catalog as store

log = logging.getLogger("lakehouse.iceberg")

ATTEMPTS = 6  # computations of one commit when other writers keep winning the swap
PATH_PROPERTIES = ("write.data.path", "write.metadata.path", "write.object-storage.path",
                   "write.folder-storage.path")
_VERSION_RE = re.compile(r"^(\d+)-[0-9a-fA-F-]{36}(?:\.gz)?\.metadata\.json$")
_CLIENT_PROPERTIES = ("s3.endpoint", "s3.region", "s3.force-virtual-addressing")


# --- storage ----------------------------------------------------------------------------------------


def client_storage_properties(ctx: Context) -> dict[str, str]:
    """Where the warehouse is, for clients (never a credential: engines bring their own)."""
    props = catalog_for(ctx.settings).properties
    return {k: str(props[k]) for k in _CLIENT_PROPERTIES if k in props}


def _io(ctx: Context, location: str) -> Any:
    from pyiceberg.io import load_file_io

    return load_file_io(properties=catalog_for(ctx.settings).properties, location=location)


_cache: OrderedDict[str, Any] = OrderedDict()  # metadata files never change once written
_cache_lock = threading.Lock()
_CACHE_SIZE = 512


def read_metadata(ctx: Context, location: str) -> Any:
    with _cache_lock:
        if location in _cache:
            _cache.move_to_end(location)
            return _cache[location]
    from pyiceberg.serializers import FromInputFile

    md = FromInputFile.table_metadata(_io(ctx, location).new_input(location))
    _remember(location, md)
    return md


def _remember(location: str, md: Any) -> None:
    with _cache_lock:
        _cache[location] = md
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def _write_metadata(ctx: Context, md: Any, location: str) -> None:
    from pyiceberg.serializers import ToOutputFile

    ToOutputFile.table_metadata(md, _io(ctx, location).new_output(location))
    _remember(location, md)


def _delete_quietly(ctx: Context, location: str) -> None:
    try:
        _io(ctx, location).delete(location)
    except Exception:  # a metadata file nobody points at: leaving it behind is harmless
        log.info("could not delete %s", location)


def _warehouse(ctx: Context) -> str:
    return str(catalog_for(ctx.settings).properties["warehouse"]).rstrip("/")


def within(ctx: Context, s: Scope, location: str) -> bool:
    """Whether a location lies in this workspace's part of the warehouse."""
    loc = "file://" + location if location.startswith("/") else location
    wh = _warehouse(ctx)
    if not loc.startswith(wh + "/") or "\\" in loc or "%" in loc:
        return False
    segments = loc[len(wh) + 1:].rstrip("/").split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        return False
    name = s.external(segments[0])
    return name is not None and s.visible(name)


def check_location(ctx: Context, s: Scope, location: str, what: str) -> str:
    if not isinstance(location, str) or not within(ctx, s, location):
        raise Forbidden(f"{what} must lie in this workspace's part of the warehouse "
                        f"({_warehouse(ctx)}/<namespace>/…)", code="ForbiddenException")
    return location.rstrip("/")


def _check_properties(ctx: Context, s: Scope, props: dict[str, str]) -> None:
    for key in PATH_PROPERTIES:
        if key in props:
            check_location(ctx, s, props[key], f"property {key}")


# --- results ----------------------------------------------------------------------------------------


def result(location: str | None, md: Any, snapshots: str = "all") -> dict[str, Any]:
    """A LoadTableResult: ``metadata`` is pyiceberg's model (the edge serialises it as is)."""
    if snapshots == "refs":
        keep = {ref.snapshot_id for ref in md.refs.values()}
        md = md.model_copy(update={"snapshots": [snap for snap in md.snapshots if snap.snapshot_id in keep]})
    elif snapshots != "all":
        raise InvalidInput("snapshots is 'all' or 'refs'", code="BadRequestException")
    out: dict[str, Any] = {"metadata": md, "config": {}}
    if location is not None:
        out["metadata-location"] = location
    return out


def _current(ctx: Context, s: Scope, ns: str, name: str) -> str | None:
    catalog_for(ctx.settings)
    with ctx.db.read() as conn:
        return store.metadata_location(conn, CATALOG_NAME, s.internal(ns), name)


def load_table(ctx: Context, s: Scope, parts: list[str], name: str, snapshots: str = "all") -> dict[str, Any]:
    s.require(Action.READ)
    ns = require_namespace(ctx, s, parts)
    location = _current(ctx, s, ns, table_name(name))
    if location is None:
        raise NotFound(f"table {ns}.{name} does not exist", code="NoSuchTableException")
    return result(location, read_metadata(ctx, location), snapshots)


def table_exists(ctx: Context, s: Scope, parts: list[str], name: str) -> None:
    s.require(Action.READ)
    ns = require_namespace(ctx, s, parts)
    if _current(ctx, s, ns, table_name(name)) is None:
        raise NotFound(f"table {ns}.{name} does not exist", code="NoSuchTableException")


def report_metrics(ctx: Context, s: Scope, parts: list[str], name: str, report: dict[str, Any]) -> None:
    """Accepted and dropped (the spec lets a catalog ignore reports); the table must be visible."""
    table_exists(ctx, s, parts, name)
    if not isinstance(report, dict) or "report-type" not in report:
        raise InvalidInput("a metrics report needs report-type", code="BadRequestException")


# --- create and register ----------------------------------------------------------------------------


def _new_name(name: Any) -> str:
    try:
        return check_table_name(name if isinstance(name, str) else "")
    except ValueError as exc:
        raise InvalidInput(str(exc), code="BadRequestException") from None


def create_table(ctx: Context, s: Scope, parts: list[str], body: dict[str, Any]) -> dict[str, Any]:
    from pydantic import ValidationError
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.table.locations import load_location_provider
    from pyiceberg.table.metadata import new_table_metadata
    from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, SortOrder

    s.require(Action.CATALOG_WRITE)
    ns = require_namespace(ctx, s, parts)
    name = _new_name(body.get("name"))
    props = body.get("properties") or {}
    if not isinstance(props, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
        raise InvalidInput("properties are a map of strings", code="BadRequestException")
    _check_properties(ctx, s, props)
    location = body.get("location")
    location = check_location(ctx, s, location, "location") if location else \
        f"{_warehouse(ctx)}/{s.internal(ns)}/{name}"
    try:
        md = new_table_metadata(
            schema=Schema.model_validate(body.get("schema")),
            partition_spec=PartitionSpec.model_validate(body["partition-spec"]) if body.get("partition-spec")
            else UNPARTITIONED_PARTITION_SPEC,
            sort_order=SortOrder.model_validate(body["write-order"]) if body.get("write-order")
            else UNSORTED_SORT_ORDER,
            location=location, properties=dict(props))
    except (ValidationError, ValueError, TypeError) as exc:
        raise InvalidInput(f"invalid table definition: {_first_line(exc)}", code="BadRequestException") from None
    if _current(ctx, s, ns, name) is not None:
        raise Conflict(f"table {ns}.{name} already exists", code="AlreadyExistsException")
    if body.get("stage-create"):
        return result(None, md)  # nothing stored: the client commits it with assert-create
    metadata_location = load_location_provider(location, md.properties).new_table_metadata_file_location()
    _write_metadata(ctx, md, metadata_location)
    with ctx.db.write() as conn:
        created = store.insert_table(conn, CATALOG_NAME, s.internal(ns), name, metadata_location)
        if created:
            audit.record(conn, ctx.clock(), s.principal, "iceberg.table.create", "table", f"{ns}.{name}",
                         s.workspace_id, {"location": location})
    if not created:
        _delete_quietly(ctx, metadata_location)
        raise Conflict(f"table {ns}.{name} already exists", code="AlreadyExistsException")
    return result(metadata_location, md)


def register_table(ctx: Context, s: Scope, parts: list[str], body: dict[str, Any]) -> dict[str, Any]:
    """Register an existing table by its metadata file (in this workspace's part of the warehouse);
    ``overwrite`` points an existing table at it."""
    s.require(Action.CATALOG_WRITE)
    ns = require_namespace(ctx, s, parts)
    name = _new_name(body.get("name"))
    location = check_location(ctx, s, str(body.get("metadata-location") or ""), "metadata-location")
    try:
        md = read_metadata(ctx, location)
    except FileNotFoundError:
        raise InvalidInput(f"no metadata file at {location}", code="BadRequestException") from None
    except Exception as exc:
        raise InvalidInput(f"not an Iceberg metadata file: {_first_line(exc)}", code="BadRequestException") from None
    check_location(ctx, s, md.location, "the table's location")
    current = _current(ctx, s, ns, name)
    if current is not None and not body.get("overwrite"):
        raise Conflict(f"table {ns}.{name} already exists", code="AlreadyExistsException")
    with ctx.db.write() as conn:
        lost = store.swap_all(conn, CATALOG_NAME, [store.Swap(s.internal(ns), name, current, location)])
        if lost is None:
            audit.record(conn, ctx.clock(), s.principal, "iceberg.table.register", "table", f"{ns}.{name}",
                         s.workspace_id, {"metadata_location": location})
    if lost is not None:
        raise Conflict(f"table {ns}.{name} changed meanwhile", code="AlreadyExistsException")
    return result(location, md)


# --- commit -----------------------------------------------------------------------------------------


@dataclass
class Change:
    """One table's part of a commit request."""

    namespace: str  # the client's name
    name: str
    requirements: tuple[Any, ...]
    updates: tuple[Any, ...]


@dataclass
class _Staged:
    change: Change
    current: str | None
    location: str
    metadata: Any
    written: bool


class _SwapLost(Exception):
    pass


def parse_change(parts: list[str], name: str, body: dict[str, Any]) -> Change:
    from pydantic import TypeAdapter, ValidationError
    from pyiceberg.table.update import TableRequirement, TableUpdate

    if not isinstance(body, dict):
        raise InvalidInput("a commit is a JSON object", code="BadRequestException")
    try:
        requirements = TypeAdapter(tuple[TableRequirement, ...]).validate_python(body.get("requirements") or ())
        updates = TypeAdapter(tuple[TableUpdate, ...]).validate_python(body.get("updates") or ())
    except ValidationError as exc:
        raise InvalidInput(f"invalid requirement or update: {_first_line(exc)}", code="BadRequestException") from None
    ns = parts[0] if len(parts) == 1 else "\x1f".join(parts)
    return Change(ns, name, requirements, updates)


def commit_table(ctx: Context, s: Scope, parts: list[str], name: str, body: dict[str, Any]) -> dict[str, Any]:
    s.require(Action.CATALOG_WRITE)
    change = parse_change(parts, name, body)
    ident = body.get("identifier")
    if isinstance(ident, dict) and (ident.get("name") not in (None, name)):
        raise InvalidInput("the identifier in the body names another table", code="BadRequestException")
    (staged,) = _commit(ctx, s, [change])
    return {"metadata-location": staged.location, "metadata": staged.metadata}


def commit_transaction(ctx: Context, s: Scope, body: dict[str, Any]) -> None:
    s.require(Action.CATALOG_WRITE)
    items = body.get("table-changes") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise InvalidInput("table-changes lists at least one table", code="BadRequestException")
    changes: list[Change] = []
    for item in items:
        ident = item.get("identifier") if isinstance(item, dict) else None
        if not isinstance(ident, dict) or not isinstance(ident.get("namespace"), list) \
                or not isinstance(ident.get("name"), str):
            raise InvalidInput("every table change names its table (identifier)", code="BadRequestException")
        changes.append(parse_change([str(p) for p in ident["namespace"]], ident["name"], item))
    if len({(c.namespace, c.name) for c in changes}) != len(changes):
        raise InvalidInput("a transaction changes each table once", code="BadRequestException")
    _commit(ctx, s, changes)


def _commit(ctx: Context, s: Scope, changes: list[Change]) -> list[_Staged]:
    for c in changes:
        require_namespace(ctx, s, [c.namespace])
        table_name(c.name)
        _check_updates(ctx, s, c.updates)
    for attempt in range(ATTEMPTS):
        staged = [_stage(ctx, s, c) for c in changes]
        for st in staged:
            if st.written:
                _write_metadata(ctx, st.metadata, st.location)
        try:
            with ctx.db.write() as conn:
                lost = store.swap_all(conn, CATALOG_NAME, [
                    store.Swap(s.internal(st.change.namespace), st.change.name, st.current, st.location)
                    for st in staged])
                if lost is not None:
                    raise _SwapLost(f"{lost.namespace}.{lost.name}")
        except _SwapLost as exc:
            for st in staged:
                if st.written:
                    _delete_quietly(ctx, st.location)
            log.info("commit lost the swap on %s (attempt %d); computing it again", exc, attempt + 1)
            continue
        return staged
    raise Conflict("other writers kept committing first; load the table and try again",
                   code="CommitFailedException")


def _stage(ctx: Context, s: Scope, change: Change) -> _Staged:
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.table.locations import load_location_provider
    from pyiceberg.table.metadata import TableMetadataV1
    from pyiceberg.table.update import update_table_metadata

    current = _current(ctx, s, change.namespace, change.name)
    base = read_metadata(ctx, current) if current else None
    if base is None and not any(r.type == "assert-create" for r in change.requirements):
        raise NotFound(f"table {change.namespace}.{change.name} does not exist", code="NoSuchTableException")
    try:
        for requirement in change.requirements:
            requirement.validate(base)
    except CommitFailedException as exc:
        raise Conflict(f"{change.namespace}.{change.name}: {exc}", code="CommitFailedException") from None
    try:
        if base is None:
            from pyiceberg.schema import Schema

            empty = TableMetadataV1.model_construct(last_column_id=-1, schema=Schema())  # type: ignore[call-arg]
            md = update_table_metadata(empty, change.updates, enforce_validation=True)
        else:
            md = update_table_metadata(base, change.updates, metadata_location=current)
    except CommitFailedException as exc:
        raise Conflict(f"{change.namespace}.{change.name}: {exc}", code="CommitFailedException") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidInput(f"cannot apply the updates: {_first_line(exc)}", code="BadRequestException") from None
    if base is not None and md == base:
        return _Staged(change, current, str(current), base, written=False)
    check_location(ctx, s, md.location, "the table's location")
    version = _version(current) + 1 if current else 0
    location = load_location_provider(md.location, md.properties).new_table_metadata_file_location(version)
    check_location(ctx, s, location, "the metadata location")
    return _Staged(change, current, location, md, written=True)


def _check_updates(ctx: Context, s: Scope, updates: tuple[Any, ...]) -> None:
    for u in updates:
        if u.action == "set-location":
            check_location(ctx, s, u.location, "set-location")
        elif u.action == "set-properties":
            _check_properties(ctx, s, u.updates)
        elif u.action == "add-snapshot":
            check_location(ctx, s, u.snapshot.manifest_list, "a snapshot's manifest list")


def _version(location: str) -> int:
    m = _VERSION_RE.match(location.rsplit("/", 1)[-1])
    return int(m.group(1)) if m else -1


# --- drop and rename --------------------------------------------------------------------------------


def drop_table(ctx: Context, s: Scope, parts: list[str], name: str, purge: bool = False) -> None:
    s.require(Action.CATALOG_WRITE)
    ns = require_namespace(ctx, s, parts)
    name = table_name(name)
    catalog_for(ctx.settings)
    with ctx.db.write() as conn:
        location = store.metadata_location(conn, CATALOG_NAME, s.internal(ns), name)
        if location is None or not store.delete_table(conn, CATALOG_NAME, s.internal(ns), name):
            raise NotFound(f"table {ns}.{name} does not exist", code="NoSuchTableException")
        audit.record(conn, ctx.clock(), s.principal, "iceberg.table.drop", "table", f"{ns}.{name}",
                     s.workspace_id, {"purge": purge})
    if purge:
        _purge(ctx, s, location)


def _purge(ctx: Context, s: Scope, location: str) -> int:
    """Delete the files of a dropped table that lie in this workspace's part of the warehouse (a file
    elsewhere, e.g. named by a registered table, is left alone and never read)."""
    try:
        md = read_metadata(ctx, location)
    except Exception:
        return 0
    io = _io(ctx, location)
    files: set[str] = {location} | {entry.metadata_file for entry in md.metadata_log}
    for snap in md.snapshots:
        if not within(ctx, s, snap.manifest_list):
            continue
        files.add(snap.manifest_list)
        for manifest in snap.manifests(io):
            if not within(ctx, s, manifest.manifest_path):
                continue
            files.add(manifest.manifest_path)
            files.update(e.data_file.file_path for e in manifest.fetch_manifest_entry(io, discard_deleted=False))
    deleted = 0
    for f in sorted(files):
        if within(ctx, s, f):
            try:
                io.delete(f)
                deleted += 1
            except (FileNotFoundError, OSError):
                pass
    return deleted


def rename_table(ctx: Context, s: Scope, body: dict[str, Any]) -> None:
    s.require(Action.CATALOG_WRITE)
    src, dst = (body.get(k) if isinstance(body, dict) else None for k in ("source", "destination"))
    if not all(isinstance(i, dict) and isinstance(i.get("namespace"), list) and isinstance(i.get("name"), str)
               for i in (src, dst)):
        raise InvalidInput("source and destination are table identifiers", code="BadRequestException")
    assert isinstance(src, dict) and isinstance(dst, dict)
    src_ns = require_namespace(ctx, s, [str(p) for p in src["namespace"]])
    src_name = table_name(src["name"])
    dst_ns = require_namespace(ctx, s, [str(p) for p in dst["namespace"]])
    dst_name = _new_name(dst["name"])
    with ctx.db.write() as conn:
        outcome = store.rename_table(conn, CATALOG_NAME, (s.internal(src_ns), src_name),
                                     (s.internal(dst_ns), dst_name))
        if outcome == "renamed":
            audit.record(conn, ctx.clock(), s.principal, "iceberg.table.rename", "table", f"{src_ns}.{src_name}",
                         s.workspace_id, {"to": f"{dst_ns}.{dst_name}"})
    if outcome == "missing":
        raise NotFound(f"table {src_ns}.{src_name} does not exist", code="NoSuchTableException")
    if outcome == "exists":
        raise Conflict(f"table {dst_ns}.{dst_name} already exists", code="AlreadyExistsException")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
