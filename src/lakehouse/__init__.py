"""Lakehouse Control Room: a self-hosted lakehouse control plane and data plane."""

__version__ = "0.1.0"
