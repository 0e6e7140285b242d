"""The phases of a pipeline run: ingest → transform → validate → publish.

Ingest and transform stage their outputs (Parquet under the warehouse's
``_staging/<workspace>/<environment>/<run_id>/``); validate runs the data-quality checks on what
is staged; publish commits each staged table to Iceberg in one atomic commit and declares the
new watermarks and lineage in its output manifest,
which the control plane records in the transaction that marks the publish succeeded. A failed
phase therefore never changes a published table, and readers see the old snapshot until publish.
"""

from __future__ import annotations

# One module per phase type (the entry points name them); this module keeps the old import path.
from lakehouse.handlers.ingest import ingest, schema_drift
from lakehouse.handlers.pipeline_common import META_COLUMNS, _staged
from lakehouse.handlers.publish import merged, publish
from lakehouse.handlers.transform import references, transform
from lakehouse.handlers.validate import validate

__all__ = ["META_COLUMNS", "_staged", "ingest", "merged", "publish", "references", "schema_drift", "transform",
           "validate"]
