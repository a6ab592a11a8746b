"""Helpers for the AMP tests: crews made through the crew service, a client for a
sandbox crew, webhook posting, and small database queries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from reviewapp.amp.client import AmpClient
from reviewapp.amp.crews import create_crew, get_crew
from reviewapp.amp.webhooks import inbound_secret
from reviewapp.extensions import db
from reviewapp.models import Execution, ReviewRound, WebhookDelivery

from .fake_amp import FakeAmp


@pytest.fixture
def amp():
    """An independent fake AMP (tests/amp/fake_amp.py) on a loopback port."""
    fake = FakeAmp()
    yield fake
    fake.close()


INPUTS = {
    "research": {"topic": "heat pumps", "current_year": "2025"},
    "travel": {"destination": "Lisbon", "days": "3"},
    "support": {"customer_name": "Ada", "question": "Where is my order?"},
}


@pytest.fixture
def crew(app):
    """crew("name", base_url=...) -> name; a crew made through the service (no AMP behind)."""

    def make(name: str = "research", base_url: str = "http://127.0.0.1:9", token: str = "tok-research-0001"):
        with app.app_context():
            create_crew(name, base_url, token)
            db.session.commit()
        return name

    return make


@pytest.fixture
def secret_of(app):
    def read(name: str) -> str:
        with app.app_context():
            return inbound_secret(get_crew(name))

    return read


@pytest.fixture
def hook(client, secret_of):
    """hook("research", "human-input", payload) -> response (bearer = the crew's secret)."""

    def post(name: str, kind: str, payload: Any = None, *, secret: str | None = None,
             raw: bytes | None = None, headers: dict[str, str] | None = None):
        token = secret if secret is not None else secret_of(name)
        all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        data = raw if raw is not None else json.dumps(payload).encode()
        return client.post(f"/hooks/amp/{name}/{kind}", data=data, headers=all_headers,
                           content_type="application/json")

    return post


def sandbox_client(sandbox, name: str = "research", *, token: str | None = None,
                   read_timeout: float = 3.0) -> AmpClient:
    return AmpClient(sandbox.crew_url(name), token if token is not None else sandbox.crews[name],
                     connect_timeout=1.0, read_timeout=read_timeout)


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def rounds_of(kickoff_id: str) -> list[ReviewRound]:
    return list(db.session.scalars(
        select(ReviewRound).join(Execution).where(Execution.kickoff_id == kickoff_id).order_by(ReviewRound.id)
    ))


def execution_of(kickoff_id: str) -> Execution | None:
    return db.session.scalar(select(Execution).where(Execution.kickoff_id == kickoff_id))


def deliveries(*where) -> list[WebhookDelivery]:
    return list(db.session.scalars(select(WebhookDelivery).where(*where).order_by(WebhookDelivery.id)))
