"""``seed``: create an Odoo-17-shaped database filled with deterministic synthetic data.

The same ``scale``, ``seed`` and ``anchor`` give byte-identical rows on every run and on both
databases: all randomness comes from one ``random.Random(seed)`` drawn in a fixed order, dates derive
from the anchor (default 2026-01-01, data covers the year before it), never from the clock. Scale 1
writes about 1,000 journal items (``account_move_line``); everything else grows linearly with it.

Money is ``Decimal`` quantized to cents end to end: PostgreSQL gets unconstrained ``numeric`` columns
(as Odoo declares them), SQLite gets decimal strings in ``DECIMAL_TEXT`` columns (TEXT affinity, so
SQLite never converts them to binary floats; see ``odoo_schema``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from operator import itemgetter
from typing import Any

from lakehouse.connectors.errors import SeedError
from lakehouse.connectors.odoo_db import SeedDb, driver_errors
from lakehouse.connectors.odoo_docs import Documents
from lakehouse.connectors.odoo_master import build_master
from lakehouse.connectors.odoo_schema import BY_NAME, TABLES
from lakehouse.connectors.urls import parse_url

DEFAULT_ANCHOR = date(2026, 1, 1)
LINES_PER_SCALE = 1000
BATCH_ROWS = 20_000

Advance = Callable[[int], None]


def seed(url: str, scale: int, seed: int = 17, reset: bool = False, progress: bool = False,
         anchor: date = DEFAULT_ANCHOR) -> dict[str, int]:
    """Create the Odoo tables at ``url`` and fill them; return the row count of every table.

    Refuses (``SeedError``) when any of the tables already exists, unless ``reset`` drops them first.
    A missing PostgreSQL database or SQLite file is created. Connection problems raise
    ``SourceUnavailable``. ``progress`` draws a progress bar on stderr.
    """
    if scale < 1:
        raise SeedError(f"scale must be at least 1, got {scale}")
    target = LINES_PER_SCALE * scale
    parsed = parse_url(url)
    with driver_errors(parsed.display), SeedDb(parsed, create=True) as db, \
            _progress_bar(progress, target) as advance:
        existing = db.existing_tables(BY_NAME)
        if existing and not reset:
            raise SeedError(f"{db.url.display} already has Odoo tables ({', '.join(existing[:3])}"
                            f"{', …' if len(existing) > 3 else ''}); pass reset=True (--reset) to recreate them")
        db.drop(reversed([t.name for t in TABLES]))
        db.create(TABLES)
        counts = _generate(db, scale, seed, anchor, target, advance)
        db.finish(TABLES)
    return counts


def _generate(db: SeedDb, scale: int, seed: int, anchor: date, target: int, advance: Advance) -> dict[str, int]:
    getters = {t.name: itemgetter(*t.column_names) for t in TABLES}
    buffers: dict[str, list[tuple[Any, ...]]] = {t.name: [] for t in TABLES}
    counts = dict.fromkeys(buffers, 0)

    def emit(table: str, row: dict[str, Any]) -> None:
        buffer = buffers[table]
        buffer.append(getters[table](row))
        if len(buffer) >= BATCH_ROWS:
            flush(table)

    def flush(table: str) -> None:
        if buffers[table]:
            db.load(BY_NAME[table], buffers[table])
            counts[table] += len(buffers[table])
            buffers[table] = []

    rng = random.Random(seed)
    master = build_master(rng, scale, anchor, emit)
    Documents(master, rng, emit, target).run(advance)
    for table in buffers:
        flush(table)
    return counts


@contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Advance]:
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("journal items"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("seed", total=total)
        yield lambda n: bar.advance(task, n)
