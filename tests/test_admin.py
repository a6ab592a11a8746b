from __future__ import annotations

from sqlalchemy import select

from reviewapp.extensions import db
from reviewapp.models import AuditEvent, Role, User
from tests.conftest import PASSWORD


def get_user(app, username):
    with app.app_context():
        return db.session.scalar(select(User).where(User.username == username))


def audit_names(app):
    with app.app_context():
        return [e.event for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_reviewer_gets_403_page(client, login_as):
    login_as("reviewer")
    response = client.get("/admin/users")
    assert response.status_code == 403
    assert b"permission" in response.data and b"Traceback" not in response.data


def test_admin_creates_account_with_password(app, client, login_as):
    login_as("admin")
    response = client.post(
        "/admin/users/new", data={"username": "bob", "role": "lead", "password": "bobs password"}
    )
    assert response.status_code == 302
    bob = get_user(app, "bob")
    assert bob.role is Role.LEAD and not bob.must_change_password
    assert "account_created" in audit_names(app)


def test_admin_creates_account_with_one_time_password(app, client, login_as):
    login_as("admin")
    response = client.post("/admin/users/new", data={"username": "bob", "role": "reviewer"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    password = page.split('id="one-time-password">')[1].split("<")[0]
    other = app.test_client()
    r = other.post("/login", data={"username": "bob", "password": password})
    assert r.headers["Location"] == "/account/password"
    assert other.get("/").headers["Location"] == "/account/password"


def test_duplicate_and_weak_are_refused(app, client, login_as):
    login_as("admin")
    dup = client.post("/admin/users/new", data={"username": "ADMIN1", "role": "reviewer", "password": "long enough"})
    assert dup.status_code == 400 and b"already taken" in dup.data
    weak = client.post("/admin/users/new", data={"username": "bob", "role": "reviewer", "password": "short"})
    assert weak.status_code == 400 and b"at least 8" in weak.data
    assert get_user(app, "bob") is None


def test_bad_role_value_is_a_400(client, login_as, make_user):
    login_as("admin")
    bob = make_user("bob")
    assert client.post(f"/admin/users/{bob.id}/role", data={"role": "emperor"}).status_code == 400
    assert client.post("/admin/users/new", data={"username": "x1", "role": "emperor"}).status_code == 400


def test_unknown_user_is_404(client, login_as):
    login_as("admin")
    assert client.get("/admin/users/424242").status_code == 404


def test_admin_cannot_demote_or_deactivate_self(app, client, login_as):
    admin = login_as("admin")
    r = client.post(f"/admin/users/{admin.id}/role", data={"role": "reviewer"}, follow_redirects=True)
    assert b"cannot demote" in r.data
    r = client.post(f"/admin/users/{admin.id}/deactivate", follow_redirects=True)
    assert b"cannot deactivate" in r.data
    me = get_user(app, "admin1")
    assert me.role is Role.ADMIN and me.active


def _session_of(app, username):
    c = app.test_client()
    assert c.post("/login", data={"username": username, "password": PASSWORD}).status_code == 302
    assert c.get("/").status_code == 200
    return c


def test_deactivation_ends_sessions_at_once(app, client, login_as, make_user):
    login_as("admin")
    bob = make_user("bob")
    bobs = _session_of(app, "bob")
    # a copied cookie is just another client with the same cookie jar
    copied = app.test_client()
    copied._cookies = bobs._cookies.copy()
    client.post(f"/admin/users/{bob.id}/deactivate")
    assert bobs.get("/").status_code == 302
    assert copied.get("/").status_code == 302
    client.post(f"/admin/users/{bob.id}/reactivate")
    assert bobs.get("/").status_code == 302  # old session stays dead
    assert get_user(app, "bob").active
    assert {"deactivated", "reactivated"} <= set(audit_names(app))


def test_role_change_ends_sessions(app, client, login_as, make_user):
    login_as("admin")
    bob = make_user("bob", "lead")
    bobs = _session_of(app, "bob")
    client.post(f"/admin/users/{bob.id}/role", data={"role": "reviewer"})
    assert bobs.get("/").status_code == 302
    assert get_user(app, "bob").role is Role.REVIEWER


def test_password_reset_generated_and_temporary(app, client, login_as, make_user):
    login_as("admin")
    bob = make_user("bob")
    bobs = _session_of(app, "bob")
    r = client.post(f"/admin/users/{bob.id}/reset-password", data={})
    assert r.status_code == 200 and b"one-time-password" in r.data
    assert bobs.get("/").status_code == 302
    r = client.post(f"/admin/users/{bob.id}/reset-password", data={"temporary": "temporary pw 1"})
    assert r.status_code == 302
    c = app.test_client()
    r = c.post("/login", data={"username": "bob", "password": "temporary pw 1"})
    assert r.headers["Location"] == "/account/password"
    r = c.post(
        "/account/password",
        data={"current_password": "temporary pw 1", "new_password": "bobs own pw", "confirm": "bobs own pw"},
    )
    assert r.status_code == 302 and c.get("/").status_code == 200
    assert "password_reset" in audit_names(app)


def test_audit_rows_are_append_only(app, make_user):
    import pytest

    from reviewapp.models import AppendOnlyError

    make_user("bob")
    with app.app_context():
        row = db.session.scalar(select(AuditEvent))
        row.event = "tampered"
        with pytest.raises(AppendOnlyError):
            db.session.flush()
        db.session.rollback()
        db.session.delete(db.session.scalar(select(AuditEvent)))
        with pytest.raises(AppendOnlyError):
            db.session.flush()
