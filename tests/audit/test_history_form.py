"""The history page's heading and filter form are rendered once per filters, role, mount
point and crew/reviewer lists (reviewapp/fragments.py): whatever else changes must not
show an earlier request's form."""

from __future__ import annotations

import re

from flask import template_rendered

from reviewapp.audit.views import HISTORY_FORM


def select_options(page: str, name: str) -> list[str]:
    select = re.search(rf'<select id="f-{name}" name="{name}">(.*?)</select>', page, re.S)
    assert select is not None, f"no {name} filter"
    return re.findall(r"<option [^>]*>([^<]*)</option>", select.group(1))


def form_renders(app, run) -> int:
    """How many times ``run()`` rendered the form's template."""
    rendered = []

    def note(sender, template, context, **extra):
        if template.name == HISTORY_FORM:
            rendered.append(template)

    with template_rendered.connected_to(note, app):
        run()
    return len(rendered)


def test_the_form_is_rendered_once_for_the_same_filters_and_role(app, client, login_as, factory):
    factory.decided(crew="research", reviewer="rita")
    factory.commit()
    login_as("lead")
    pages = []
    assert form_renders(app, lambda: pages.extend(client.get("/audit/history").get_data(as_text=True)
                                                  for _ in range(3))) == 1
    assert pages[0] == pages[1] == pages[2]
    assert form_renders(app, lambda: client.get("/audit/history?decision=approve")) == 1
    assert form_renders(app, lambda: client.get("/audit/history?decision=approve&after=1.1")) == 0


def test_each_role_gets_its_own_form(app, make_user):
    """Each request with its own app context, as served (the ``factory`` fixture holds
    one open, which would carry the first user on ``g`` into the next client's requests)."""
    from reviewapp.extensions import db
    from tests.audit.factories import AuditFactory
    from tests.conftest import AuthActions

    with app.app_context():
        AuditFactory().decided(crew="research", reviewer="rita")
        db.session.commit()
    make_user("lena", "lead")
    make_user("rita2", "reviewer")

    clients = {}
    for username in ("lena", "rita2"):  # both logged in first: a login may read the lists anew
        clients[username] = app.test_client()
        assert AuthActions(clients[username]).login(username).status_code == 302
    for username in ("lena", "rita2", "lena", "rita2"):
        page = clients[username].get("/audit/history").get_data(as_text=True)
        if username == "lena":
            assert "Decision history" in page and "f-reviewer" in page and "export.csv" in page
        else:
            assert "Your decisions" in page
            assert "f-reviewer" not in page and "export" not in page and "/audit/events" not in page


def test_a_new_crew_shows_in_the_form_at_once(app, client, login_as, factory):
    factory.decided(crew="research", reviewer="rita")
    factory.commit()
    login_as("lead")
    assert select_options(client.get("/audit/history").get_data(as_text=True), "crew") == ["Any", "research"]
    with app.app_context():
        factory.crew("zeta")
        factory.commit()
    page = client.get("/audit/history").get_data(as_text=True)
    assert select_options(page, "crew") == ["Any", "research", "zeta"]


def test_the_store_is_bounded(app, client, login_as, factory, monkeypatch):
    from reviewapp import fragments

    monkeypatch.setattr(fragments, "FRAGMENTS_KEPT", 3)
    factory.decided(crew="research", reviewer="rita")
    factory.commit()
    login_as("lead")
    for word in ("a", "b", "c", "d", "e"):
        page = client.get(f"/audit/history?q={word}").get_data(as_text=True)
        assert f'name="q" value="{word}"' in page
        assert len(app.extensions[fragments._STORE]) <= 3
