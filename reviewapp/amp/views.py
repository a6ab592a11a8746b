"""Crew pages (filled in by the AMP integration issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("crews", __name__)
