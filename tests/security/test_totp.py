"""TOTP second factor: enrolment, login verification, enforcement, admin reset."""

from __future__ import annotations

import re

import pyotp
import pytest
from sqlalchemy import select

from reviewapp.extensions import db
from reviewapp.models import AuditEvent, User
from tests.conftest import PASSWORD


def code(secret, clock, offset_seconds=0):
    return pyotp.TOTP(secret).at(clock.current.timestamp() + offset_seconds)


def shown_secret(page: str) -> str:
    return re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)


def password_step(client, username):
    return client.post("/login", data={"username": username, "password": PASSWORD})


def stored(app, username):
    with app.app_context():
        return db.session.scalar(select(User).where(User.username == username))


def audit(app, event):
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)))


def enrol(client, clock) -> str:
    """On the account page, as the logged-in user: returns the enrolled secret."""
    secret = shown_secret(client.get("/account/two-factor").get_data(as_text=True))
    response = client.post("/account/two-factor/enable", data={"code": code(secret, clock)})
    assert response.status_code == 302, response.data
    return secret


@pytest.fixture
def enrolled_lead(app, make_user, clock):
    make_user("lena", "lead")
    client = app.test_client()
    password_step(client, "lena")
    secret = enrol(client, clock)
    clock.advance(seconds=30)  # the enrolment code's step is spent
    return secret


class TestEnrolment:
    def test_secret_is_shown_once_and_stored_encrypted(self, app, client, make_user, clock):
        make_user("lena", "lead")
        password_step(client, "lena")
        page = client.get("/account/two-factor").get_data(as_text=True)
        secret = shown_secret(page)
        assert "otpauth://totp/reviewapp:lena?secret=" + secret in page
        response = client.post("/account/two-factor/enable", data={"code": code(secret, clock)})
        assert response.status_code == 302
        user = stored(app, "lena")
        assert user.totp_secret and secret not in user.totp_secret
        assert user.totp_secret.startswith("gAAAA")  # Fernet
        after = client.get("/account/two-factor").get_data(as_text=True)
        assert secret not in after and "totp-secret" not in after
        assert len(audit(app, "totp_enabled")) == 1

    def test_the_secret_travels_encrypted_in_the_session(self, client, make_user, clock):
        make_user("lena", "lead")
        password_step(client, "lena")
        response = client.get("/account/two-factor")
        secret = shown_secret(response.get_data(as_text=True))
        cookie = " ".join(response.headers.getlist("Set-Cookie"))
        with client.session_transaction() as sess:
            stored_values = str(dict(sess))
        assert secret not in cookie and secret not in stored_values

    def test_a_wrong_code_does_not_enrol(self, app, client, make_user, clock):
        make_user("lena", "lead")
        password_step(client, "lena")
        client.get("/account/two-factor")
        client.post("/account/two-factor/enable", data={"code": "000000"})
        assert stored(app, "lena").totp_secret is None

    def test_enrolling_ends_other_sessions_and_renews_this_one(self, app, make_user, clock):
        make_user("lena", "lead")
        this, other = app.test_client(), app.test_client()
        password_step(this, "lena")
        password_step(other, "lena")
        with this.session_transaction() as sess:
            old_id = sess["_user_id"]
        enrol(this, clock)
        with this.session_transaction() as sess:
            assert sess["_user_id"] != old_id
        assert this.get("/").status_code == 200
        assert other.get("/").status_code == 302


class TestLogin:
    def test_password_alone_does_not_log_in(self, app, client, enrolled_lead):
        response = password_step(client, "lena")
        assert response.headers["Location"].startswith("/login/two-factor")
        assert client.get("/").status_code == 302
        assert len(audit(app, "login")) == 1  # the fixture's login before enrolling

    def test_the_right_code_completes_the_login(self, app, client, enrolled_lead, clock):
        password_step(client, "lena")
        response = client.post("/login/two-factor", data={"code": code(enrolled_lead, clock)})
        assert response.status_code == 302 and response.headers["Location"] == "/"
        assert client.get("/").status_code == 200
        assert len(audit(app, "login")) == 2

    def test_next_survives_the_second_step(self, client, enrolled_lead, clock):
        response = client.post("/login?next=/admin/users", data={"username": "lena", "password": PASSWORD})
        second = client.post(response.headers["Location"], data={"code": code(enrolled_lead, clock)})
        assert second.headers["Location"] == "/admin/users"

    def test_a_wrong_code_is_refused_and_audited(self, app, client, enrolled_lead, clock):
        password_step(client, "lena")
        response = client.post("/login/two-factor", data={"code": "123456"})
        assert response.status_code == 200 and "not right" in response.get_data(as_text=True)
        assert client.get("/").status_code == 302
        assert len(audit(app, "totp_failed")) == 1

    def test_a_code_works_only_once(self, app, enrolled_lead, clock):
        first, second = app.test_client(), app.test_client()
        used = code(enrolled_lead, clock)
        for c in (first, second):
            password_step(c, "lena")
        assert first.post("/login/two-factor", data={"code": used}).status_code == 302
        assert second.post("/login/two-factor", data={"code": used}).status_code == 200
        clock.advance(seconds=30)
        assert second.post("/login/two-factor", data={"code": code(enrolled_lead, clock)}).status_code == 302

    def test_a_slightly_old_code_is_accepted(self, client, enrolled_lead, clock):
        clock.advance(seconds=60)  # past the steps the enrolment may have spent
        password_step(client, "lena")
        late = code(enrolled_lead, clock, offset_seconds=-30)
        assert client.post("/login/two-factor", data={"code": late}).status_code == 302

    def test_guessing_codes_is_throttled(self, client, enrolled_lead, clock):
        password_step(client, "lena")
        codes = [client.post("/login/two-factor", data={"code": f"{n:06d}"}).status_code for n in range(6)]
        assert codes[:5] == [200] * 5 and codes[5] == 429
        right = client.post("/login/two-factor", data={"code": code(enrolled_lead, clock)})
        assert right.status_code == 429

    def test_the_second_step_times_out(self, client, enrolled_lead, clock):
        password_step(client, "lena")
        clock.advance(minutes=6)
        response = client.post("/login/two-factor", data={"code": code(enrolled_lead, clock)})
        assert response.status_code == 302 and response.headers["Location"] == "/login"
        assert client.get("/").status_code == 302

    def test_the_second_step_without_a_password_goes_to_login(self, client):
        assert client.get("/login/two-factor").headers["Location"] == "/login"

    def test_turning_it_off_needs_a_code(self, app, client, enrolled_lead, clock):
        password_step(client, "lena")
        client.post("/login/two-factor", data={"code": code(enrolled_lead, clock)})
        clock.advance(seconds=30)
        client.post("/account/two-factor/disable", data={"code": "000000"})
        assert stored(app, "lena").totp_secret is not None
        client.post("/account/two-factor/disable", data={"code": code(enrolled_lead, clock)})
        assert stored(app, "lena").totp_secret is None


class TestRequired:
    @pytest.fixture
    def app_config(self):
        return {"REQUIRE_TOTP": True}

    def test_a_lead_must_enrol_at_login(self, app, client, make_user, clock):
        make_user("lena", "lead")
        response = password_step(client, "lena")
        assert response.headers["Location"].startswith("/login/two-factor")
        setup = client.get(response.headers["Location"])
        assert setup.headers["Location"].startswith("/login/two-factor/setup")
        page = client.get(setup.headers["Location"]).get_data(as_text=True)
        assert "requires a second factor" in page
        assert client.get("/").status_code == 302  # not logged in yet
        secret = shown_secret(page)
        assert secret == shown_secret(client.get("/login/two-factor/setup").get_data(as_text=True))
        done = client.post("/login/two-factor/setup", data={"code": code(secret, clock)})
        assert done.headers["Location"] == "/"
        assert client.get("/").status_code == 200
        assert stored(app, "lena").totp_secret

    @pytest.mark.parametrize("role", ["lead", "admin"])
    def test_leads_and_admins_cannot_skip_it(self, client, make_user, role):
        make_user("boss", role)
        password_step(client, "boss")
        assert client.get("/").status_code == 302
        assert client.get("/admin/users").status_code == 302

    def test_reviewers_are_not_asked(self, client, make_user):
        make_user("rita", "reviewer")
        assert password_step(client, "rita").headers["Location"] == "/"

    def test_a_required_factor_cannot_be_turned_off(self, app, client, make_user, clock):
        make_user("lena", "lead")
        password_step(client, "lena")
        secret = shown_secret(client.get("/login/two-factor/setup").get_data(as_text=True))
        client.post("/login/two-factor/setup", data={"code": code(secret, clock)})
        clock.advance(seconds=30)
        response = client.post("/account/two-factor/disable", data={"code": code(secret, clock)}, follow_redirects=True)
        assert "cannot be turned off" in response.get_data(as_text=True)
        assert stored(app, "lena").totp_secret


class TestAdminReset:
    def test_admin_resets_a_lost_factor(self, app, make_user, login_as, client, enrolled_lead, clock):
        lena = app.test_client()
        password_step(lena, "lena")
        lena.post("/login/two-factor", data={"code": code(enrolled_lead, clock)})
        assert lena.get("/").status_code == 200
        login_as("admin")
        user_id = stored(app, "lena").id
        assert "Reset two-factor login" in client.get(f"/admin/users/{user_id}").get_data(as_text=True)
        response = client.post(f"/admin/users/{user_id}/reset-totp")
        assert response.status_code == 302
        assert stored(app, "lena").totp_secret is None
        assert lena.get("/").status_code == 302  # their sessions ended
        [row] = audit(app, "totp_reset")
        assert row.actor_name == "admin1" and row.target_name == "lena"

    def test_reset_is_post_only_and_admin_only(self, app, client, login_as, enrolled_lead):
        login_as("lead", username="lead2")
        user_id = stored(app, "lena").id
        assert client.post(f"/admin/users/{user_id}/reset-totp").status_code == 403
        assert client.get(f"/admin/users/{user_id}/reset-totp").status_code in (403, 405)
        assert stored(app, "lena").totp_secret is not None
