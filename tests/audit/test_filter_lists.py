"""The crew and reviewer lists of the filter forms: shown, read at most once per
interval, and read again at once after this process commits a crew or an account."""

from __future__ import annotations

import re

from sqlalchemy import insert

from reviewapp.amp.crews import create_crew
from reviewapp.audit import filter_lists
from reviewapp.extensions import db
from reviewapp.models import Crew
from tests.sqlcapture import captured_statements


def _options(page: str, select_id: str) -> list[str]:
    block = re.search(rf'<select id="{select_id}".*?</select>', page, re.S)
    assert block is not None, select_id
    return re.findall(r"<option value=\"\d+\"[^>]*>([^<]*)</option>", block.group(0))


def _crew(app, name: str) -> None:
    with app.app_context():
        create_crew(name, f"https://{name}.example.com", "token-" + name)
        db.session.commit()


def _list_reads(statements: list[str]) -> int:
    return sum("UNION ALL" in statement for statement in statements)


def test_the_history_form_lists_every_crew_and_account_by_name(app, client, login_as, make_user):
    _crew(app, "zeta")
    _crew(app, "alpha")
    make_user("bob")
    login_as("lead", "ann")
    page = client.get("/audit/history").get_data(as_text=True)
    assert _options(page, "f-crew") == ["alpha", "zeta"]
    assert _options(page, "f-reviewer") == ["ann", "bob"]
    assert _options(client.get("/").get_data(as_text=True), "f-crew") == ["alpha", "zeta"]


def test_the_lists_are_read_once_per_interval(app, client, login_as, monkeypatch):
    _crew(app, "alpha")
    login_as("lead")
    clock = [1000.0]
    monkeypatch.setattr(filter_lists.time, "monotonic", lambda: clock[0])
    with captured_statements(app) as seen:
        client.get("/audit/history")
        client.get("/")
        client.get("/audit/history")
    assert _list_reads(seen) == 1
    with app.app_context():  # a crew added behind the ORM's back (another process, say)
        db.session.execute(insert(Crew.__table__).values(
            name="beta", base_url="https://beta.example.com", token_encrypted="x", token_hint="x",
            inbound_secret_encrypted="y"))
        db.session.commit()
    assert _options(client.get("/").get_data(as_text=True), "f-crew") == ["alpha"]
    clock[0] += app.config["FILTER_LISTS_SECONDS"]
    with captured_statements(app) as seen:
        page = client.get("/").get_data(as_text=True)
    assert _list_reads(seen) == 1
    assert _options(page, "f-crew") == ["alpha", "beta"]


def test_a_crew_or_account_this_process_commits_shows_at_once(app, client, login_as, make_user):
    login_as("lead", "ann")
    assert _options(client.get("/audit/history").get_data(as_text=True), "f-crew") == []
    _crew(app, "alpha")
    make_user("bob")
    page = client.get("/audit/history").get_data(as_text=True)
    assert _options(page, "f-crew") == ["alpha"]
    assert _options(page, "f-reviewer") == ["ann", "bob"]


def test_a_rolled_back_change_keeps_the_lists(app, client, login_as):
    _crew(app, "alpha")
    login_as("lead")
    client.get("/")
    with app.app_context():
        db.session.add(Crew(name="never", base_url="https://never.example.com", token_encrypted="x",
                            token_hint="x", inbound_secret_encrypted="y"))
        db.session.flush()
        db.session.rollback()
        assert "lists" in app.extensions[filter_lists._CACHE]


def test_no_interval_reads_them_on_every_view(app, client, login_as):
    app.config["FILTER_LISTS_SECONDS"] = 0
    login_as("lead")
    with captured_statements(app) as seen:
        client.get("/audit/history")
        client.get("/audit/history")
    assert _list_reads(seen) == 2
