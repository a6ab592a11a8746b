from __future__ import annotations

import pytest
from sqlalchemy import select

from reviewapp.extensions import db
from reviewapp.models import AuditEvent
from tests.conftest import PASSWORD


def events(app, name):
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def test_login_page_has_the_named_fields(client):
    page = client.get("/login").get_data(as_text=True)
    assert ">Username<" in page and ">Password<" in page and ">Log in<" in page


def test_login_and_logout(app, client, make_user, auth):
    make_user("ann")
    response = auth.login("ann")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    assert auth.logout().status_code == 302
    assert client.get("/").status_code == 302
    assert len(events(app, "login")) == 1 and len(events(app, "logout")) == 1


def test_logout_is_post_only(client, login_as):
    login_as()
    assert client.get("/logout").status_code == 405


@pytest.mark.parametrize("username", ["ann", "nobody"])
def test_wrong_password_and_unknown_user_look_the_same(app, client, make_user, auth, username):
    make_user("ann")
    response = auth.login(username, "wrong password!")
    assert response.status_code == 200
    assert "Invalid username or password." in response.get_data(as_text=True)
    [row] = events(app, "login_failed")
    assert row.source_ip == "127.0.0.1"


def test_deactivated_user_cannot_log_in(app, client, make_user, auth):
    user = make_user("ann")
    with app.app_context():
        from reviewapp.admin.services import get_user, set_active

        set_active(get_user(user.id), False)
        db.session.commit()
    assert auth.login("ann").status_code == 200


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/admin/users", "/admin/users"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_next_is_followed_only_on_site(client, make_user, auth, target, expected):
    make_user("ann")
    response = client.post(
        "/login", query_string={"next": target}, data={"username": "ann", "password": PASSWORD}
    )
    assert response.headers["Location"] == expected


def test_long_password_is_not_truncated(app, client, make_user, auth):
    long_pw = "p" * 200
    make_user("ann", password=long_pw)
    assert auth.login("ann", long_pw[:72] + "x" * 128).status_code == 200
    assert auth.login("ann", long_pw).status_code == 302


def test_change_own_password(app, client, make_user, auth):
    make_user("ann")
    auth.login("ann")
    bad = client.post(
        "/account/password",
        data={"current_password": "nope-nope", "new_password": "new password 1", "confirm": "new password 1"},
    )
    assert bad.status_code == 200 and b"current password is not correct" in bad.data
    ok = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": "new password 1", "confirm": "new password 1"},
    )
    assert ok.status_code == 302
    assert client.get("/").status_code == 200  # this session continues
    auth.logout()
    assert auth.login("ann").status_code == 200
    assert auth.login("ann", "new password 1").status_code == 302


def test_short_new_password_is_refused(client, make_user, auth):
    make_user("ann")
    auth.login("ann")
    response = client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": "short", "confirm": "short"},
    )
    assert response.status_code == 200 and b"at least 8" in response.data


def test_password_change_ends_other_sessions(app, make_user):
    make_user("ann")
    one, two = app.test_client(), app.test_client()
    for c in (one, two):
        c.post("/login", data={"username": "ann", "password": PASSWORD})
    one.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": "another pass", "confirm": "another pass"},
    )
    assert one.get("/").status_code == 200
    assert two.get("/").status_code == 302


def test_hash_is_argon2id(app, make_user):
    user = make_user("ann")
    assert user.password_hash.startswith("$argon2id$")


def test_logout_revokes_a_copied_session_cookie(app, client, make_user, auth):
    make_user("ann")
    auth.login("ann")
    copied = app.test_client()
    copied._cookies = client._cookies.copy()
    assert copied.get("/").status_code == 200
    auth.logout()
    response = copied.get("/")
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    # logging in again gives a fresh, working session
    assert auth.login("ann").status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("raw", ["1:1", "9" * 40 + ":1", "1:" + "9" * 40, "-1:1", "x:1", "1"])
def test_load_user_refuses_ids_it_cannot_hold(app, make_user, raw):
    from reviewapp.auth.services import load_user

    make_user("ann")
    with app.app_context():
        user = load_user(raw)
    assert (user is not None) == (raw == "1:1")
