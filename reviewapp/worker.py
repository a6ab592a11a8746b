"""The background worker: AMP status polling and resume delivery, pass after pass.

Run it with ``flask --app app worker`` (``--once`` for a single pass). Several workers
may run at once, on one host or many: jobs are leased (see reviews/delivery.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from typing import Any

from flask import Flask

from .extensions import db
from .reviews.delivery import deliver_due_jobs, worker_identity

log = logging.getLogger("reviewapp.worker")


def _status_pass() -> int:
    """One AMP status polling pass, if the AMP sync module is installed; commits."""
    if importlib.util.find_spec("reviewapp.amp.sync") is None:
        return 0
    sync = importlib.import_module("reviewapp.amp.sync")
    try:
        checked = int(sync.run_status_pass())
        db.session.commit()
        return checked
    except Exception:
        db.session.rollback()
        log.exception("status pass failed; the next pass tries again")
        return 0


def _delivery_pass(worker_id: str) -> int:
    try:
        return deliver_due_jobs(worker_id=worker_id)
    except Exception:
        db.session.rollback()
        log.exception("delivery pass failed; leased jobs are taken again when their lease expires")
        return 0


def run_once(app: Flask, *, worker_id: str | None = None) -> dict[str, Any]:
    """One pass: poll due executions, then deliver due resume jobs."""
    worker_id = worker_id or worker_identity()
    with app.app_context():
        try:
            checked = _status_pass()
            delivered = _delivery_pass(worker_id)
        finally:
            db.session.remove()
    return {"status_checked": checked, "delivered": delivered, "worker": worker_id}


def run_forever(app: Flask, *, stop: threading.Event, interval: float = 1.0) -> None:
    """Pass after pass until ``stop`` is set (SIGTERM/SIGINT in the CLI)."""
    worker_id = worker_identity()
    log.info("worker %s started", worker_id)
    while not stop.is_set():
        summary = run_once(app, worker_id=worker_id)
        if summary["delivered"] or summary["status_checked"]:
            log.info("worker pass: %s", summary)
        stop.wait(interval)
    log.info("worker %s stopped", worker_id)
