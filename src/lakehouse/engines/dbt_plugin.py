"""A dbt-duckdb plugin (``plugins: [{module: lakehouse.engines.dbt_plugin}]`` in the generated profile):
every connection dbt opens loads DuckDB's ``avro`` and ``iceberg`` extensions from the
``duckdb-extension-*`` wheels (never downloads), works in UTC, and may read no file outside the
table folders of the run's environment and dbt's own folder (``allowed_directories``)."""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.allowed = [str(d) for d in plugin_config.get("allowed_directories") or []]

    def configure_connection(self, conn: Any) -> None:
        from lakehouse.lake.duck import load_extension

        for name in ("avro", "iceberg"):
            load_extension(conn, name)
        conn.execute("SET TimeZone = 'UTC'")
        if self.allowed:
            quoted = ", ".join("'" + d.replace("'", "''") + "'" for d in self.allowed)
            conn.execute(f"SET allowed_directories = [{quoted}]")
            conn.execute("SET enable_external_access = false")
