"""CLI for crews, the AMP sandbox and the demo (filled in by the AMP integration issue)."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Add the AMP commands (crews, sandbox, demo) to ``app.cli``."""
