"""reviewapp: human review of CrewAI AMP crew tasks."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import config as config_module
from .amp import crypto
from .extensions import csrf, db, login_manager, migrate

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "migrations")
ROOT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=os.path.join(ROOT_DIR, "templates"),
        static_folder=os.path.join(ROOT_DIR, "static"),
    )
    app.config.from_mapping(config_module.DEFAULTS)
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_mapping(config_module.from_environment(os.environ))
    else:
        app.config.from_mapping(test_config)
    os.makedirs(app.instance_path, exist_ok=True)
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = config_module.default_database_uri(
            app.instance_path
        )
    config_module.derive_settings(app.config)
    config_module.check_production_safety(app.config, debug=app.debug)

    _init_extensions(app)
    _register_blueprints(app)

    from . import access, errors, nav, security, statements

    statements.init_app(app)
    security.init_app(app)  # first: session timeouts must run before the access check
    access.init_app(app)
    nav.init_app(app)
    errors.init_app(app)

    from .cli import register_cli

    register_cli(app)
    _configure_logging(app)
    if not app.testing:
        _compile_templates(app)
        _warm_up_statements(app)
        crypto.warm_up(app)
    return app


def _compile_templates(app: Flask) -> None:
    """Compile every template at start (~0.2 s CPU), not inside the first request of each
    worker that shows it (~0.1 s for the review page: a cold page's largest cost).
    Tests create many apps and skip this."""
    for name in app.jinja_env.list_templates(extensions=["html"]):
        app.jinja_env.get_template(name)


def _warm_up_statements(app: Flask) -> None:
    """Run the review page's statements once, on no row (its reads, and the claim's
    UPDATE, which matches nothing and is rolled back), so that SQLAlchemy has compiled
    them at start and not inside the first review page each worker serves (~60M
    instructions of its ~230M; see reviews.services.warm_up_review_page). Skipped while there is no
    database (a SQLite file not created yet: connecting would create it; tables not
    migrated yet): the app starts all the same. The pool is emptied afterwards, so a
    server that forks after loading the app (gunicorn --preload) shares no connection
    with its workers; the compiled statements stay (they are kept by the engine)."""
    from sqlalchemy.exc import SQLAlchemyError

    from .reviews.services import warm_up_review_page

    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite" and not os.path.isfile(engine.url.database or ""):
            return
        try:
            warm_up_review_page()
        except SQLAlchemyError as exc:
            app.logger.info("review page statements not warmed up: %s", exc)
        finally:
            db.session.rollback()
            engine.dispose()


def _init_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True, compare_type=True)
    login_manager.init_app(app)
    csrf.init_app(app)

    from .auth.services import load_user

    login_manager.user_loader(load_user)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to open that page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"


def _register_blueprints(app: Flask) -> None:
    from .admin.views import bp as admin_bp
    from .amp.receivers import bp as hooks_bp
    from .amp.views import bp as crews_bp
    from .audit.views import bp as audit_bp
    from .auth.views import bp as auth_bp
    from .reviews.views import bp as reviews_bp

    app.register_blueprint(reviews_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(crews_bp, url_prefix="/crews")
    app.register_blueprint(hooks_bp, url_prefix="/hooks/amp")
    app.register_blueprint(audit_bp, url_prefix="/audit")


def _configure_logging(app: Flask) -> None:
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    """WAL + busy timeout + foreign keys for every SQLite connection."""
    module = type(dbapi_connection).__module__
    if "sqlite" not in module:
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
