"""Data plane storage: Iceberg tables, the artifact store, content hashing."""
