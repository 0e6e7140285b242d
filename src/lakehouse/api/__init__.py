"""HTTP API: FastAPI routers per resource; wire schemas in schemas.py."""
