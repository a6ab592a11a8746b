"""CLI for the review loop: the worker (filled in by the review-loop issue)."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Add the ``worker`` command to ``app.cli``."""
