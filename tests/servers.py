"""Live loopback servers for tests: the AMP sandbox and reviewapp itself.

Registered from ``tests/conftest.py`` (``pytest_plugins``). Fixtures:

- ``sandbox``: the AMP sandbox (``reviewapp.amp.sandbox.Sandbox``) served on
  127.0.0.1:<free port>; ``.url``, ``.crews`` (name -> token), ``.crew_url(name)``,
  ``.calls(path=None)``, ``.webhook_calls(kind=None)``, ``.set_fault(mode, **kw)``,
  ``.clear_faults()``, ``.reset()``, ``.wait_idle(timeout)``.
- ``live_server``: the test ``app`` served on 127.0.0.1:<free port> (``.url``), with the
  app's ``PUBLIC_URL`` set to it so the sandbox's webhooks reach it.
- ``sandbox_crew``: factory ``sandbox_crew(name="research") -> Crew`` registering a
  sandbox crew through the crew service (detached row; starts ``live_server`` too).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from reviewapp.amp.crews import create_crew
from reviewapp.amp.sandbox import Sandbox
from reviewapp.amp.serving import BackgroundServer
from reviewapp.extensions import db


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(step_delay=0.01, webhook_timeout=5.0).serve()
    yield box
    box.close()


@pytest.fixture
def live_server(app: Flask) -> Iterator[BackgroundServer]:
    server = BackgroundServer(app).start()
    previous = app.config["PUBLIC_URL"]
    app.config["PUBLIC_URL"] = server.url
    yield server
    server.stop()
    app.config["PUBLIC_URL"] = previous


@pytest.fixture
def sandbox_crew(app: Flask, sandbox: Sandbox, live_server: BackgroundServer):
    def make(name: str = "research"):
        with app.app_context():
            crew = create_crew(name, sandbox.crew_url(name), sandbox.crews[name])
            db.session.commit()
            db.session.refresh(crew)
            db.session.expunge(crew)
            return crew

    return make
