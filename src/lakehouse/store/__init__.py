"""The only package that imports SQLAlchemy: tables, queue statements, dialect differences."""
