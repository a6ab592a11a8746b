"""Webhook receivers AMP calls (filled in by the AMP integration issue)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("hooks", __name__)
