"""The revoked-session check and the user load share one statement per request."""

from __future__ import annotations

import re

import pytest

from tests.sqlcapture import captured_statements


def statements_of(app, client, path: str) -> list[str]:
    with captured_statements(app) as seen:
        assert client.get(path).status_code == 200
    return seen


def test_one_statement_loads_the_user_and_checks_the_session(app, client, login_as):
    login_as("reviewer")
    client.get("/")  # the queue's filter lists (crews and accounts) are read once per interval
    statements = statements_of(app, client, "/")
    touching = [s for s in statements if re.search(r"\bFROM (users|revoked_sessions)\b", s)]
    assert len(touching) == 1, touching
    assert "revoked_sessions" in touching[0] and "FROM users" in touching[0]


@pytest.mark.parametrize("user_id", ["not-a-number", "²:1", "2147483648:1"])
def test_a_session_with_an_unreadable_user_id_is_anonymous(app, client, login_as, user_id):
    login_as("reviewer")
    with client.session_transaction() as session:
        session["_user_id"] = user_id
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
