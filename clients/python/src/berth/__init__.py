"""Berth: the client library (berth.client), the CLI (berth.cli) and the stubs (berth.v1)."""

__version__ = "0.1.0"
