"""Every statement the Iceberg REST catalog runs, on the tables of pyiceberg's SQL catalog.

The REST catalog (services/iceberg_rest.py) and the embedded SQL catalog (lake/catalog.py) are one
store: ``iceberg_tables`` (one row per table: its current metadata file) and
``iceberg_namespace_properties`` (one row per namespace property), both keyed by the catalog name.
The table definitions are pyiceberg's own, so the columns can never drift from what its
``SqlCatalog`` reads and writes.

A commit is a compare-and-swap on ``metadata_location``: ``UPDATE … WHERE metadata_location = <the
one the commit was computed from>``; no row changed means another writer committed first. Several
swaps in one transaction (a multi-table commit) are all-or-nothing: the caller raises and the
transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, Table, and_, delete, func, or_, select, union, update

from lakehouse.store.dialect import insert_ignore

__all__ = [
    "Swap",
    "create_namespace",
    "delete_namespace",
    "delete_table",
    "insert_table",
    "metadata_location",
    "namespace_exists",
    "namespace_names",
    "namespace_properties",
    "rename_table",
    "swap_all",
    "table_count",
    "table_names",
    "update_namespace_properties",
]


def _tables() -> tuple[Table, Table]:
    from pyiceberg.catalog.sql import IcebergNamespaceProperties, IcebergTables

    return IcebergTables.__table__, IcebergNamespaceProperties.__table__  # type: ignore[return-value]


def _is_table(t: Table) -> ColumnElement[bool]:
    return or_(t.c.iceberg_type.is_(None), t.c.iceberg_type == "TABLE")


# --- namespaces -----------------------------------------------------------------------------------


def namespace_names(conn: Connection, catalog: str, starts_with: str) -> list[str]:
    """Distinct namespaces (with a property or a table) whose name starts with ``starts_with``."""
    tables, props = _tables()
    stmt = union(
        select(tables.c.table_namespace.label("ns")).where(
            tables.c.catalog_name == catalog, tables.c.table_namespace.startswith(starts_with, autoescape=True)),
        select(props.c.namespace.label("ns")).where(
            props.c.catalog_name == catalog, props.c.namespace.startswith(starts_with, autoescape=True)),
    )
    return sorted({str(r[0]) for r in conn.execute(stmt)})


def namespace_exists(conn: Connection, catalog: str, ns: str) -> bool:
    tables, props = _tables()
    if conn.execute(select(props.c.namespace).where(props.c.catalog_name == catalog, props.c.namespace == ns)
                    .limit(1)).first():
        return True
    return conn.execute(select(tables.c.table_name).where(
        tables.c.catalog_name == catalog, tables.c.table_namespace == ns).limit(1)).first() is not None


def namespace_properties(conn: Connection, catalog: str, ns: str) -> dict[str, str]:
    _, props = _tables()
    rows = conn.execute(select(props.c.property_key, props.c.property_value).where(
        props.c.catalog_name == catalog, props.c.namespace == ns))
    return {str(k): str(v) for k, v in rows}


def create_namespace(conn: Connection, catalog: str, ns: str, properties: Mapping[str, str]) -> bool:
    """Insert the namespace's properties (``exists=true`` when none, as pyiceberg does); False when the
    namespace already had properties."""
    _, props = _tables()
    if namespace_properties(conn, catalog, ns):
        return False
    rows = [{"catalog_name": catalog, "namespace": ns, "property_key": k, "property_value": v}
            for k, v in (dict(properties) or {"exists": "true"}).items()]
    return insert_ignore(conn, props, rows, "catalog_name", "namespace", "property_key") == len(rows)


def update_namespace_properties(conn: Connection, catalog: str, ns: str, removals: Iterable[str],
                                updates: Mapping[str, str]) -> None:
    _, props = _tables()
    gone = set(removals) | set(updates)
    if gone:
        conn.execute(delete(props).where(props.c.catalog_name == catalog, props.c.namespace == ns,
                                         props.c.property_key.in_(sorted(gone))))
    if updates:
        conn.execute(props.insert(), [{"catalog_name": catalog, "namespace": ns, "property_key": k,
                                       "property_value": v} for k, v in updates.items()])
    if not namespace_properties(conn, catalog, ns):  # the last property removed: keep the namespace
        conn.execute(props.insert().values(catalog_name=catalog, namespace=ns, property_key="exists",
                                           property_value="true"))


def delete_namespace(conn: Connection, catalog: str, ns: str) -> None:
    _, props = _tables()
    conn.execute(delete(props).where(props.c.catalog_name == catalog, props.c.namespace == ns))


# --- tables ---------------------------------------------------------------------------------------


def table_count(conn: Connection, catalog: str, ns: str) -> int:
    tables, _ = _tables()
    return int(conn.execute(select(func.count()).select_from(tables).where(
        tables.c.catalog_name == catalog, tables.c.table_namespace == ns)).scalar_one())


def table_names(conn: Connection, catalog: str, ns: str, *, after: str | None = None,
                limit: int | None = None) -> list[str]:
    """Table names of a namespace in name order, from after ``after`` (keyset paging)."""
    tables, _ = _tables()
    stmt = select(tables.c.table_name).where(tables.c.catalog_name == catalog, tables.c.table_namespace == ns,
                                             _is_table(tables)).order_by(tables.c.table_name)
    if after is not None:
        stmt = stmt.where(tables.c.table_name > after)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [str(r[0]) for r in conn.execute(stmt)]


def metadata_locations(conn: Connection, catalog: str, ns: str, names: Iterable[str]) -> dict[str, str]:
    """The current metadata file of each named table of a namespace that exists (one query)."""
    wanted = list(names)
    if not wanted:
        return {}
    tables, _ = _tables()
    rows = conn.execute(select(tables.c.table_name, tables.c.metadata_location).where(
        tables.c.catalog_name == catalog, tables.c.table_namespace == ns, tables.c.table_name.in_(wanted)))
    return {str(r[0]): str(r[1]) for r in rows if r[1] is not None}


def all_tables(conn: Connection, catalog: str, v1_schema: bool = True) -> list[tuple[str, str, str | None]]:
    """(namespace, name, current metadata file) of every table of the catalog (views left out where
    the catalog's schema has the ``iceberg_type`` column, i.e. pyiceberg's "v1")."""
    tables, _ = _tables()
    stmt = select(tables.c.table_namespace, tables.c.table_name, tables.c.metadata_location).where(
        tables.c.catalog_name == catalog)
    if v1_schema:
        stmt = stmt.where(_is_table(tables))
    return [(str(r[0]), str(r[1]), None if r[2] is None else str(r[2])) for r in conn.execute(stmt)]


def metadata_location(conn: Connection, catalog: str, ns: str, name: str) -> str | None:
    """The current metadata file of a table; None when there is no such table."""
    tables, _ = _tables()
    return conn.execute(select(tables.c.metadata_location).where(
        tables.c.catalog_name == catalog, tables.c.table_namespace == ns, tables.c.table_name == name,
        _is_table(tables))).scalar()


def insert_table(conn: Connection, catalog: str, ns: str, name: str, location: str) -> bool:
    """Register a table at its first metadata file; False when the name is taken."""
    tables, _ = _tables()
    return insert_ignore(conn, tables, [{
        "catalog_name": catalog, "table_namespace": ns, "table_name": name, "metadata_location": location,
        "previous_metadata_location": None, "iceberg_type": "TABLE"}],
        "catalog_name", "table_namespace", "table_name") == 1


def delete_table(conn: Connection, catalog: str, ns: str, name: str) -> bool:
    tables, _ = _tables()
    res = conn.execute(delete(tables).where(tables.c.catalog_name == catalog, tables.c.table_namespace == ns,
                                            tables.c.table_name == name, _is_table(tables)))
    return bool(res.rowcount)


def rename_table(conn: Connection, catalog: str, src: tuple[str, str], dst: tuple[str, str]) -> str:
    """``renamed``, ``missing`` (no source table) or ``exists`` (the destination name is taken)."""
    tables, _ = _tables()
    if metadata_location(conn, catalog, *src) is None:
        return "missing"
    taken = conn.execute(select(tables.c.table_name).where(
        tables.c.catalog_name == catalog, tables.c.table_namespace == dst[0], tables.c.table_name == dst[1])).first()
    if taken:
        return "exists"
    conn.execute(update(tables).where(tables.c.catalog_name == catalog, tables.c.table_namespace == src[0],
                                      tables.c.table_name == src[1]).values(table_namespace=dst[0], table_name=dst[1]))
    return "renamed"


@dataclass(frozen=True)
class Swap:
    """One table's part of a commit: from ``expected`` (None: the table is being created) to ``new``."""

    namespace: str
    name: str
    expected: str | None
    new: str


def swap_all(conn: Connection, catalog: str, swaps: Iterable[Swap]) -> Swap | None:
    """Compare-and-swap every table's metadata location in this transaction; the first swap that
    fails (another writer committed first, or the table to create exists) is returned and the caller
    must roll the transaction back. None when all succeeded."""
    tables, _ = _tables()
    for s in swaps:
        if s.expected is None:
            if not insert_table(conn, catalog, s.namespace, s.name, s.new):
                return s
            continue
        # unchanged (``new == expected``): the row is still locked and checked, so that the
        # requirements this table's part was checked against hold at commit time too
        values = {"metadata_location": s.new} if s.new == s.expected else {
            "metadata_location": s.new, "previous_metadata_location": s.expected}
        res = conn.execute(update(tables).where(and_(
            tables.c.catalog_name == catalog, tables.c.table_namespace == s.namespace, tables.c.table_name == s.name,
            tables.c.metadata_location == s.expected)).values(**values))
        if res.rowcount != 1:
            return s
    return None
