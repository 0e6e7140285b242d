"""The few SQLAlchemy names that cross the store boundary, so code outside ``store/`` never imports
SQLAlchemy itself: the connection a service's transaction hands to store functions, the row mapping
some of them still return, and the two errors a caller tells apart (a constraint refused the write; the
database could not be reached)."""

from __future__ import annotations

from sqlalchemy import Connection, RowMapping
from sqlalchemy.exc import IntegrityError, OperationalError

__all__ = ["Connection", "IntegrityError", "OperationalError", "RowMapping"]
