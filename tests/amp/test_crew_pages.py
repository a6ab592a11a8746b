"""Crew pages: who may open what, adding/editing/removing crews, the kickoff form,
receivers and secrets, the token_broken banner and its fix."""

from __future__ import annotations

import re

import pytest
from flask import url_for
from sqlalchemy import select

from reviewapp.amp.crews import get_crew
from reviewapp.amp.crypto import decrypt_secret
from reviewapp.amp.executions import ingest_human_input
from reviewapp.extensions import db
from reviewapp.models import AuditEvent, Crew, Decision, Execution, ExecutionStatus, User

from .conftest import count, execution_of

TOKEN = "tok-admin-typed-secret-5678"
PASSWORD = "correct horse battery"  # make_user's default (tests/conftest.py)


def _add(client, name="research", url="http://127.0.0.1:9", token=TOKEN):
    return client.post("/crews/new", data={"name": name, "base_url": url, "token": token})


def test_reviewers_cannot_open_crew_pages(client, login_as, crew):
    crew("research")
    login_as("reviewer")
    for url in ("/crews/", "/crews/research", "/crews/executions/1"):
        assert client.get(url).status_code == 403
    assert client.post("/crews/research/kickoff", data={}).status_code == 403
    assert b'href="/crews/"' not in client.get("/").data


def test_leads_see_crews_but_cannot_manage_them(client, login_as, crew):
    crew("research")
    login_as("lead")
    page = client.get("/crews/")
    assert page.status_code == 200 and b"research" in page.data and b"Add a crew" not in page.data
    assert _add(client, "other").status_code == 403
    for action in ("edit", "token", "remove", "secret", "rotate-secret"):
        assert client.post(f"/crews/research/{action}", data={}).status_code == 403
    assert b"Remove crew" not in client.get("/crews/research").data


def test_admin_adds_a_crew_and_the_token_is_never_shown(app, client, login_as):
    login_as("admin")
    response = _add(client)
    assert response.status_code == 302 and response.headers["Location"] == "/crews/research"
    with app.app_context():
        crew = get_crew("research")
        assert TOKEN not in crew.token_encrypted and decrypt_secret(crew.token_encrypted) == TOKEN
        assert crew.token_hint == "…5678"
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.event == "crew_created")) is not None
    for url in ("/crews/", "/crews/research"):
        page = client.get(url).data.decode()
        assert TOKEN not in page and "…5678" in page


@pytest.mark.parametrize(("name", "url", "token", "message"), [
    ("Bad Name", "http://x", "t", "lowercase"),
    ("new", "http://x", "t", "lowercase"),
    ("ok", "ftp://x", "t", "https://"),
    ("ok", "https://user:pw@x", "t", "token field"),
    ("ok", "https://x/?q=1", "t", "query"),
    ("ok", "https://x", "two words", "printable"),
])
def test_invalid_crews_are_refused_with_a_message(client, login_as, name, url, token, message):
    login_as("admin")
    response = _add(client, name, url, token)
    assert response.status_code == 400 and message in response.data.decode()


def test_duplicate_name_is_refused(client, login_as):
    login_as("admin")
    _add(client)
    response = _add(client)
    assert response.status_code == 400 and "already exists" in response.data.decode()


def test_crew_page_shows_health_inputs_kickoff_form_and_masked_receivers(app, client, login_as, sandbox_crew, secret_of):
    sandbox_crew("research")
    login_as("lead")
    page = client.get("/crews/research").data.decode()
    assert "Healthy" in page
    assert '<label for="in_0">topic</label>' in page and '<label for="in_1">current_year</label>' in page
    assert ">Kick off</button>" in page
    assert "/hooks/amp/research/human-input" in page and "/hooks/amp/research/task/•••" in page
    assert secret_of("research") not in page
    assert "Show the inbound secret" not in page  # admins only


def test_unreachable_amp_is_reported_not_crashed(client, login_as, crew):
    crew("research", base_url="http://127.0.0.1:9")
    login_as("lead")
    page = client.get("/crews/research")
    assert page.status_code == 200
    assert b"could not connect" in page.data and b">Kick off</button>" not in page.data


def test_lead_kicks_off_and_the_execution_appears_running(app, client, login_as, sandbox, sandbox_crew):
    sandbox_crew("research")
    lead = login_as("lead")
    response = client.post("/crews/research/kickoff", data={
        "input_names": '["topic", "current_year"]', "in_0": "tidal power", "in_1": "2025"})
    assert response.status_code == 302 and response.headers["Location"] == "/crews/research"
    body = sandbox.calls("/kickoff")[0]["body"]
    assert body["inputs"] == {"topic": "tidal power", "current_year": "2025"}
    assert body["humanInputWebhook"]["authentication"]["strategy"] == "bearer"
    assert set(body) >= {"taskWebhookUrl", "stepWebhookUrl", "crewWebhookUrl"}
    with app.app_context():
        execution = db.session.scalar(select(Execution))
        assert execution.started_by_id == lead.id and execution.inputs["topic"] == "tidal power"
        assert execution.status in (ExecutionStatus.RUNNING, ExecutionStatus.PENDING_REVIEW)
    page = client.get("/crews/research").data.decode()
    assert execution.kickoff_id in page and "Kicked off" in page


def test_kickoff_form_requires_every_input(app, client, login_as, sandbox, sandbox_crew):
    sandbox_crew("research")
    login_as("lead")
    response = client.post("/crews/research/kickoff", data={
        "input_names": '["topic", "current_year"]', "in_0": "tidal power", "in_1": " "})
    assert response.status_code == 400 and "Enter a value for current_year." in response.data.decode()
    assert sandbox.calls("/kickoff") == []


def test_amp_422_marks_the_missing_field(app, client, login_as, sandbox, sandbox_crew):
    sandbox_crew("research")
    login_as("lead")
    response = client.post("/crews/research/kickoff", data={"input_names": '["current_year"]', "in_0": "2025"})
    page = response.data.decode()
    assert response.status_code == 400 and "Missing required inputs" in page
    with app.app_context():
        assert count(Execution) == 0


def test_damaged_kickoff_form_is_400(client, login_as, crew):
    crew("research")
    login_as("lead")
    assert client.post("/crews/research/kickoff", data={"input_names": "{"}).status_code == 400
    assert client.get("/crews/research/kickoff").status_code == 302


def test_amp_down_at_kickoff_starts_nothing(app, client, login_as, sandbox, sandbox_crew):
    sandbox_crew("research")
    login_as("lead")
    sandbox.set_fault("500", path="/kickoff")
    response = client.post("/crews/research/kickoff", data={
        "input_names": '["topic", "current_year"]', "in_0": "x", "in_1": "2025"})
    assert response.status_code == 503 and "Nothing was started" in response.data.decode()
    with app.app_context():
        assert count(Execution) == 0


def test_refused_token_shows_the_banner_and_the_admin_fixes_it(app, client, login_as, auth, make_user, sandbox, sandbox_crew):
    sandbox_crew("research")
    login_as("lead")
    sandbox.set_fault("401", path="/kickoff", times=1)
    response = client.post("/crews/research/kickoff", data={
        "input_names": '["topic", "current_year"]', "in_0": "x", "in_1": "2025"}, follow_redirects=True)
    page = response.data.decode()
    assert "AMP refused this crew's token" in page and "an admin replaces" in page
    with app.app_context():
        assert get_crew("research").token_broken
    auth.logout()
    admin = make_user("boss", "admin")
    auth.login(admin.username)
    page = client.get("/crews/research").data.decode()
    assert "Replace the token" in page
    response = client.post("/crews/research/token", data={"token": sandbox.crews["research"]})
    assert response.status_code == 302
    with app.app_context():
        crew = get_crew("research")
        assert not crew.token_broken and crew.token_broken_reason is None
    assert "AMP refused" not in client.get("/crews/research").data.decode()


def test_edit_changes_url_and_token(app, client, login_as, crew):
    crew("research")
    login_as("admin")
    client.post("/crews/research/edit", data={"base_url": "https://new.example.com/", "token": ""})
    with app.app_context():
        crew_row = get_crew("research")
        assert crew_row.base_url == "https://new.example.com"
        assert decrypt_secret(crew_row.token_encrypted) == "tok-research-0001"
    client.post("/crews/research/edit", data={"base_url": "", "token": "tok-brand-new-9999"})
    with app.app_context():
        assert get_crew("research").token_hint == "…9999"
    response = client.post("/crews/research/edit", data={"base_url": "nope"}, follow_redirects=True)
    assert "must start with https://" in response.data.decode()


def test_admin_reveals_the_secret_on_a_post_and_it_is_audited(app, client, login_as, crew, secret_of):
    crew("research")
    login_as("admin")
    assert secret_of("research") not in client.get("/crews/research").data.decode()
    page = client.post("/crews/research/secret").data.decode()
    assert secret_of("research") in page and "/hooks/amp/research/task/" + secret_of("research") in page
    with app.app_context():
        assert count(AuditEvent, AuditEvent.event == "crew_secret_revealed") == 1


def test_rotating_the_secret_changes_it(client, login_as, crew, secret_of):
    crew("research")
    login_as("admin")
    before = secret_of("research")
    assert client.post("/crews/research/rotate-secret").status_code == 302
    assert secret_of("research") != before


def test_remove_keeps_history_unless_confirmed(app, client, login_as, crew):
    crew("research")
    admin = login_as("admin")
    with app.app_context():
        payload = {"execution_id": "e-1", "task_id": "t", "output": "o"}
        round_, _ = ingest_human_input(get_crew("research"), payload, raw="{}")
        db.session.add(Decision(round=round_, reviewer_id=admin.id, is_approve=True, feedback=""))
        db.session.commit()
    response = client.post("/crews/research/remove", data={}, follow_redirects=True)
    assert "1 recorded decision" in response.data.decode()
    with app.app_context():
        assert get_crew("research") is not None
    response = client.post("/crews/research/remove", data={"delete_history": "y"})
    assert response.status_code == 302 and response.headers["Location"] == "/crews/"
    with app.app_context():
        assert get_crew("research") is None and count(Execution) == 0
        assert db.session.scalar(select(User).where(User.id == admin.id)) is not None


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


class TestCsrf:
    @pytest.fixture
    def app_config(self):
        return {"WTF_CSRF_ENABLED": True}

    def test_state_changes_need_the_csrf_token(self, app, client, make_user, crew):
        crew("research")
        admin = make_user("boss", "admin")
        login_page = client.get("/login").data.decode()
        response = client.post("/login", data={"username": admin.username, "password": PASSWORD,
                                               "csrf_token": _csrf(login_page)})
        assert response.status_code == 302
        assert client.post("/crews/research/remove", data={}).status_code == 400
        assert client.post("/crews/new", data={"name": "x", "base_url": "http://x", "token": "t"}).status_code == 400
        with app.app_context():
            assert db.session.scalar(select(Crew).where(Crew.name == "research")) is not None
        page = client.get("/crews/research").data.decode()
        response = client.post("/crews/research/remove", data={"csrf_token": _csrf(page)})
        assert response.status_code == 302


def test_executions_link_to_the_timeline(app, client, login_as, crew):
    crew("research")
    with app.app_context():
        payload = {"execution_id": "e-42", "task_id": "t", "output": "o"}
        ingest_human_input(get_crew("research"), payload, raw="{}")
        db.session.commit()
        execution_id = execution_of("e-42").id
    login_as("lead")
    page = client.get("/crews/research").data.decode()
    with app.test_request_context():
        endpoint = "audit.execution_timeline" if "audit.execution_timeline" in app.view_functions else "crews.execution"
        assert f'href="{url_for(endpoint, execution_id=execution_id)}"' in page
    own = client.get(f"/crews/executions/{execution_id}")
    assert own.status_code == 200 and b"e-42" in own.data
    assert client.get("/crews/executions/999999").status_code == 404
