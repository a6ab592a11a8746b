"""``flask --app app demo``: the whole loop on one machine, from a clean clone.

It sets up a SQLite database in the instance folder (migrations), demo accounts
(reviewer, lead, admin; passwords printed), starts the AMP sandbox on its own port,
registers the sandbox crews, serves reviewapp, kicks off a few executions so the queue
has real pending reviews, and runs the worker (status sync and resume delivery).

It needs no ``REVIEWAPP_SECRET_KEY``: a key is generated once and kept in the instance
folder, so sessions and encrypted crew tokens survive restarts. The command is a Flask
CLI plugin (entry point ``flask.commands``), so it runs even where the app itself would
refuse to start for lack of a secret key.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import select

from .. import ROOT_DIR, create_app
from ..admin.services import create_user
from ..auth import passwords as password_rules
from ..auth.services import get_by_username, set_password
from ..extensions import db
from ..models import Crew, Execution, ExecutionStatus, ReviewRound, Role, RoundState
from . import crews as services
from .client import AmpError
from .executions import finish_execution, kickoff_execution
from .sandbox import Sandbox
from .serving import BackgroundServer
from .sync import run_status_pass

log = logging.getLogger("reviewapp.demo")

SECRET_FILE = "demo-secret-key"  # noqa: S105 - a file name, not a secret
ACCOUNTS_FILE = "demo-accounts.json"
DATABASE_FILE = "demo.sqlite3"
DEMO_ROLES = (Role.REVIEWER, Role.LEAD, Role.ADMIN)
SANDBOX_FORGOT = "The demo sandbox restarted and no longer knows this execution."


def example_kickoffs() -> list[tuple[str, dict[str, str]]]:
    year = str(datetime.now(UTC).year)
    return [
        ("research", {"topic": "community solar gardens", "current_year": year}),
        ("travel", {"destination": "Lisbon", "days": "3"}),
        ("support", {"customer_name": "Ada", "question": "How do I export my data?"}),
    ]


# --------------------------------------------------------------------------- instance files


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def load_or_create_secret(instance_path: str) -> str:
    """The demo's SECRET_KEY, generated once and kept in the instance folder."""
    path = os.path.join(instance_path, SECRET_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            secret = handle.read().strip()
        if len(secret) >= 32:
            return secret
    secret = secrets.token_hex(32)
    _write_private(path, secret + "\n")
    return secret


def _load_passwords(instance_path: str) -> dict[str, str]:
    path = os.path.join(instance_path, ACCOUNTS_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}


def build_demo_app(instance_path: str, *, public_url: str = "http://127.0.0.1:5000") -> Flask:
    os.makedirs(instance_path, exist_ok=True)
    app = create_app({
        "SECRET_KEY": load_or_create_secret(instance_path),
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + os.path.join(instance_path, DATABASE_FILE),
        "PUBLIC_URL": public_url,
        "REQUIRE_TOTP": False,
        # A lively demo: poll AMP often, and treat an unanswered pause as stale sooner.
        "STATUS_POLL_MIN_SECONDS": 3,
        "STATUS_POLL_MAX_SECONDS": 60,
        "STATUS_STALE_GRACE_SECONDS": 10,
    })
    app.instance_path = instance_path
    return app


# --------------------------------------------------------------------------- setup steps


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """Alembic's env.py runs ``fileConfig``, which disables every logger that exists;
    put the process's logging back as it was (the demo runs inside other programs too)."""
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    saved = {
        name: (logger.disabled, logger.level, list(logger.handlers))
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    try:
        yield
    finally:
        root.setLevel(saved_root[0])
        root.handlers[:] = saved_root[1]
        for name, (disabled, level, handlers) in saved.items():
            logger = logging.getLogger(name)
            logger.disabled, logger.level = disabled, level
            logger.handlers[:] = handlers


def migrate_database(app: Flask) -> None:
    with app.app_context(), _logging_kept():
        upgrade()


def ensure_demo_accounts(app: Flask, instance_path: str) -> dict[str, str]:
    """reviewer / lead / admin with known passwords (kept in the instance folder)."""
    stored = _load_passwords(instance_path)
    result: dict[str, str] = {}
    with app.app_context():
        for role in DEMO_ROLES:
            username = role.value
            password = stored.get(username) or f"{username}-{secrets.token_urlsafe(9)}"
            user = get_by_username(username)
            if user is None:
                create_user(username, role, password)
            elif not password_rules.verify_password(user.password_hash, password):
                set_password(user, password)
            result[username] = password
        db.session.commit()
    _write_private(os.path.join(instance_path, ACCOUNTS_FILE), json.dumps(result, indent=2) + "\n")
    return result


def register_sandbox_crews(app: Flask, sandbox: Any) -> list[str]:
    """Add (or point again at this run's sandbox) one crew per sandbox crew."""
    with app.app_context():
        for name, token in sandbox.crews.items():
            crew = services.get_crew(name)
            if crew is None:
                services.create_crew(name, sandbox.crew_url(name), token)
            else:
                services.update_crew(crew, base_url=sandbox.crew_url(name), token=token)
        db.session.commit()
    return list(sandbox.crews)


def forget_lost_executions(app: Flask, crew_names: list[str]) -> int:
    """Executions of an earlier demo run died with its sandbox: mark them failed."""
    with app.app_context():
        rows = list(db.session.scalars(
            select(Execution).join(Crew).where(
                Crew.name.in_(crew_names),
                Execution.status.in_([ExecutionStatus.RUNNING, ExecutionStatus.PENDING_REVIEW]),
            )
        ))
        for execution in rows:
            finish_execution(execution, ExecutionStatus.FAILED, error=SANDBOX_FORGOT, source="demo restart")
        db.session.commit()
    return len(rows)


def kick_off_examples(app: Flask) -> list[str]:
    """Start each example crew once, as the demo lead."""
    started = []
    with app.app_context():
        lead = get_by_username(Role.LEAD.value)
        for name, inputs in example_kickoffs():
            crew = services.get_crew(name)
            if crew is None:
                continue
            try:
                execution = kickoff_execution(crew, inputs, actor=lead)
            except AmpError as exc:
                db.session.rollback()
                log.warning("demo kickoff of %s failed: %s", name, exc)
                continue
            db.session.commit()
            started.append(execution.kickoff_id)
    return started


def pending_round_count(app: Flask) -> int:
    with app.app_context():
        return len(list(db.session.scalars(select(ReviewRound.id).where(ReviewRound.state == RoundState.PENDING))))


# --------------------------------------------------------------------------- worker


def _own_status_loop(app: Flask, stop: threading.Event, interval: float) -> None:
    while not stop.is_set():
        with app.app_context():
            try:
                run_status_pass()
                db.session.commit()
            except Exception:
                db.session.rollback()
                log.exception("status pass failed")
            finally:
                db.session.remove()
        stop.wait(interval)


def start_worker(app: Flask, stop: threading.Event, interval: float = 1.0) -> threading.Thread:
    """``reviewapp.worker.run_forever`` when it exists, else a status-sync loop."""
    try:
        worker = importlib.import_module("reviewapp.worker")
        target: Callable[..., None] = worker.run_forever
        kwargs: dict[str, Any] = {"stop": stop, "interval": interval}
    except (ImportError, AttributeError):
        target, kwargs = _own_status_loop, {"stop": stop, "interval": interval}
    thread = threading.Thread(target=target, args=(app,), kwargs=kwargs, name="demo-worker", daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- the demo


@dataclass
class Demo:
    app: Flask
    sandbox: Any
    server: BackgroundServer
    accounts: dict[str, str]
    kicked_off: list[str]
    stop_event: threading.Event = field(default_factory=threading.Event)
    worker: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def wait_for_reviews(self, count: int, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        pending = pending_round_count(self.app)
        while pending < count and time.monotonic() < deadline:
            time.sleep(0.1)
            pending = pending_round_count(self.app)
        return pending

    def stop(self) -> None:
        self.stop_event.set()
        if self.worker is not None:
            self.worker.join(10)
        self.server.stop()
        self.sandbox.close()
        with self.app.app_context():
            db.engine.dispose()


def start_demo(
    instance_path: str, *, host: str = "127.0.0.1", port: int = 5000, sandbox_port: int = 5001,
    kickoffs: bool = True, worker_interval: float = 1.0,
) -> Demo:
    """Everything but the blocking wait: returns a running :class:`Demo`."""
    app = build_demo_app(instance_path)
    migrate_database(app)
    accounts = ensure_demo_accounts(app, instance_path)
    sandbox = Sandbox().serve(host, sandbox_port)
    try:
        server = BackgroundServer(app, host, port)
    except OSError:
        sandbox.close()
        raise
    app.config["PUBLIC_URL"] = server.url  # the sandbox's webhooks come here
    server.start()
    demo = Demo(app=app, sandbox=sandbox, server=server, accounts=accounts, kicked_off=[])
    try:
        names = register_sandbox_crews(app, sandbox)
        forget_lost_executions(app, names)
        if kickoffs:
            demo.kicked_off = kick_off_examples(app)
        demo.worker = start_worker(app, demo.stop_event, worker_interval)
    except Exception:
        demo.stop()
        raise
    return demo


def _banner(demo: Demo) -> str:
    lines = [
        "",
        f"reviewapp demo is running at {demo.url}",
        "",
        "Log in with one of these accounts:",
        *[f"  {name:<9} password: {password}" for name, password in demo.accounts.items()],
        "",
        f"AMP sandbox (crews {', '.join(demo.sandbox.crews)}) at {demo.sandbox.url}",
        f"{len(demo.kicked_off)} executions kicked off; their outputs are arriving in the queue.",
        "Data lives in instance/demo.sqlite3. Stop with Ctrl+C.",
        "",
    ]
    return "\n".join(lines)


def default_instance_path() -> str:
    return os.path.join(ROOT_DIR, "instance")


@click.command("demo")
@click.option("--port", default=5000, show_default=True, type=int, help="Port for reviewapp.")
@click.option("--sandbox-port", default=5001, show_default=True, type=int,
              help="Port for the AMP sandbox (0 = any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
def demo_command(port: int, sandbox_port: int, host: str) -> None:
    """Run reviewapp with a local AMP sandbox, demo accounts and pending reviews."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        demo = start_demo(default_instance_path(), host=host, port=port, sandbox_port=sandbox_port)
    except OSError as exc:
        raise click.ClickException(
            f"Cannot listen on {host} port {port} or {sandbox_port} ({exc}). "
            "Pass --port / --sandbox-port to use others."
        ) from exc
    click.echo(_banner(demo))
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    click.echo("Stopping…")
    demo.stop()
