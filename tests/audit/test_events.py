"""Account events: listed newest first, filterable, paginated, escaped."""

from __future__ import annotations

import re

import pytest

from reviewapp.audit.pagination import PAGE_SIZE
from tests.audit.factories import at

ACTOR = re.compile(r"<td>(user\d+)</td>")


@pytest.fixture
def events(factory):
    factory.audit_event("login_failed", created_at=at(0), actor=None, target="bob", details={"reason": "bad password"})
    factory.audit_event("user_created", created_at=at(5), actor="admin1", target="bob")
    factory.audit_event("role_changed", created_at=at(days=1), actor="admin1", target="<b>carol</b>",
                        details={"from": "reviewer", "to": "<script>lead</script>"})
    factory.commit()


def table(page: str) -> str:
    return page.split("<tbody>")[1] if "<tbody>" in page else ""


def test_events_newest_first(client, login_as, events):
    login_as("lead")
    rows = table(client.get("/audit/events").get_data(as_text=True))
    assert rows.index("role_changed") < rows.index("user_created") < rows.index("login_failed")
    assert "bad password" in rows


@pytest.mark.parametrize(
    ("query", "present", "absent"),
    [
        ("event=user_created", ["user_created"], ["login_failed", "role_changed"]),
        ("actor=admin1", ["user_created", "role_changed"], ["login_failed"]),
        ("target=bob", ["user_created", "login_failed"], ["role_changed"]),
        ("from=2025-03-04", ["role_changed"], ["user_created"]),
        ("to=2025-03-03", ["user_created", "login_failed"], ["role_changed"]),
    ],
)
def test_event_filters(client, login_as, events, query, present, absent):
    login_as("lead")
    rows = table(client.get(f"/audit/events?{query}").get_data(as_text=True))
    for name in present:
        assert f'<td class="mono">{name}</td>' in rows
    for name in absent:
        assert f'<td class="mono">{name}</td>' not in rows


def test_event_values_are_escaped(client, login_as, events):
    login_as("lead")
    page = client.get("/audit/events").get_data(as_text=True)
    assert "<script>lead" not in page and "<b>carol" not in page
    assert "&lt;script&gt;lead&lt;/script&gt;" in page


def test_events_paginate(client, login_as, factory):
    for n in range(PAGE_SIZE + 5):
        factory.audit_event("login", created_at=at(n), actor=f"user{n}")
    factory.commit()
    login_as("lead")  # its own account events are newer than all of these
    first = client.get("/audit/events").get_data(as_text=True)
    older = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(older).get_data(as_text=True)
    actors = [ACTOR.findall(table(page)) for page in (first, second)]
    assert actors[0][0] == f"user{PAGE_SIZE + 4}" and actors[1][-1] == "user0"
    assert actors[0] + actors[1] == [f"user{n}" for n in reversed(range(PAGE_SIZE + 5))]


def test_bad_event_filters_are_400(client, login_as):
    login_as("lead")
    response = client.get("/audit/events?after=oops")
    assert response.status_code == 400
    assert client.get("/audit/events?event=" + "e" * 129).status_code == 400
