"""Security events reach the audit log and the application log: one line each, no
control characters an attacker could use to forge entries, and no secrets."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from reviewapp.audit.services import record_security_event
from reviewapp.extensions import db
from reviewapp.models import AuditEvent


def security_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "security event=" in r.getMessage()]


def test_forged_lines_in_a_username_stay_on_one_line(app, client, caplog):
    forged = "bob\n2030-01-01 INFO security event=login actor=admin\r\x1b[2J\u2028x"
    with caplog.at_level(logging.WARNING, logger="reviewapp"):
        client.post("/login", data={"username": forged, "password": "wrong password"})
    [line] = security_lines(caplog)
    assert "event=login_failed" in line
    assert not any(ch in line for ch in "\n\r\x1b\u2028")
    with app.app_context():
        [row] = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login_failed"))
        assert row.actor_name == forged[:64]  # stored as typed; escaped wherever shown


@pytest.mark.parametrize(
    "details",
    [
        {"token": "tok_live_abcdef123456"},
        {"Authorization": "Bearer tok_live_abcdef123456"},
        {"headers": {"authorization": "Bearer tok_live_abcdef123456"}},
        {"inbound_secret": "tok_live_abcdef123456", "reason": "bad bearer"},
        {"attempts": [{"password": "tok_live_abcdef123456"}]},
    ],
)
def test_secrets_never_reach_the_log_or_the_audit_row(app, caplog, details):
    with app.test_request_context(), caplog.at_level(logging.WARNING, logger="reviewapp"):
        record_security_event("webhook_auth_failed", actor_name="amp", details=details)
        [row] = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "webhook_auth_failed"))
        assert "tok_live" not in str(row.details)
    [line] = security_lines(caplog)
    assert "tok_live" not in line and "•••" in line


def test_webhook_style_event_keeps_its_harmless_details(app, caplog):
    with app.test_request_context(environ_base={"REMOTE_ADDR": "192.0.2.44"}):
        with caplog.at_level(logging.WARNING, logger="reviewapp"):
            record_security_event(
                "webhook_auth_failed", actor_name="amp", details={"crew": "research\nx", "reason": "bad bearer"}
            )
        [row] = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "webhook_auth_failed"))
    assert row.source_ip == "192.0.2.44" and row.details["reason"] == "bad bearer"
    [line] = security_lines(caplog)
    assert "ip=192.0.2.44" in line and "bad bearer" in line and "\n" not in line


def test_authorization_failures_are_logged(client, login_as, caplog):
    login_as("reviewer")
    with caplog.at_level(logging.WARNING, logger="reviewapp"):
        assert client.get("/admin/users").status_code == 403
    assert any("event=authorization_failed" in line for line in security_lines(caplog))


def test_login_failures_are_logged_without_the_password(client, make_user, caplog):
    make_user("ann")
    with caplog.at_level(logging.INFO, logger="reviewapp"):
        client.post("/login", data={"username": "ann", "password": "my-Secret-guess-42"})
    [line] = security_lines(caplog)
    assert "event=login_failed" in line and "actor=ann" in line
    assert "my-Secret-guess-42" not in caplog.text
