"""Sources: read upstream databases into Arrow, and the synthetic Odoo 17 database used to test them.

- ``open_source(url)`` → ``Source`` (``read_table``, ``max_value``, ``ids``, ``schema``) for
  PostgreSQL and SQLite; see ``sources``.
- ``seed(url, scale)`` creates an Odoo-17-shaped database; ``mutate(url, seed, now)`` applies one
  deterministic batch of updates, inserts and deletes to it; see ``odoo_seed`` and ``odoo_mutate``.
"""

from lakehouse.connectors.errors import ConnectorError, SeedError, SourceError, SourceUnavailable
from lakehouse.connectors.odoo_mutate import mutate
from lakehouse.connectors.odoo_seed import seed
from lakehouse.connectors.sources import Source, Watermark, open_source

__all__ = ["ConnectorError", "SeedError", "Source", "SourceError", "SourceUnavailable", "Watermark", "mutate",
           "open_source", "seed"]
