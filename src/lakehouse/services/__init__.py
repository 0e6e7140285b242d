"""Use-cases, one module per area. They own the transaction boundary."""
