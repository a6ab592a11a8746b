"""Lead audit pages (filled in by the audit issue)."""

from __future__ import annotations

from flask import Blueprint

from ..access import blueprint_requires
from ..models import Role

bp = Blueprint("audit", __name__)
blueprint_requires(bp, Role.LEAD)
