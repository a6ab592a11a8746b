"""The demo setup end to end (everything but the blocking wait): migrations, accounts,
sandbox, crews, kickoffs, webhooks into the served app, worker; then a second run."""

from __future__ import annotations

import os
import re

import requests
from sqlalchemy import select

from reviewapp.amp.demo import ACCOUNTS_FILE, DATABASE_FILE, SECRET_FILE, start_demo
from reviewapp.auth.passwords import verify_password
from reviewapp.extensions import db
from reviewapp.models import Crew, Execution, ExecutionStatus, User


def _login(url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{url}/login", timeout=10).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = session.post(f"{url}/login", data={"username": username, "password": password, "csrf_token": token},
                            allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text[:500]
    return session


def test_demo_setup_end_to_end_and_rerun(tmp_path, monkeypatch):
    monkeypatch.delenv("REVIEWAPP_SECRET_KEY", raising=False)
    instance = str(tmp_path / "instance")
    demo = start_demo(instance, port=0, sandbox_port=0, worker_interval=0.2)
    try:
        assert demo.wait_for_reviews(3) == 3
        assert sorted(demo.accounts) == ["admin", "lead", "reviewer"]
        with demo.app.app_context():
            users = {u.username: u for u in db.session.scalars(select(User))}
            assert {name: users[name].role.value for name in demo.accounts} == {
                "reviewer": "reviewer", "lead": "lead", "admin": "admin"}
            assert all(verify_password(users[n].password_hash, pw) for n, pw in demo.accounts.items())
            assert sorted(db.session.scalars(select(Crew.name))) == ["research", "support", "travel"]
        lead = _login(demo.url, "lead", demo.accounts["lead"])
        page = lead.get(f"{demo.url}/crews/research", timeout=10).text
        assert "Healthy" in page and "Kick off" in page
        first_secret = open(os.path.join(instance, SECRET_FILE)).read()
    finally:
        demo.stop()
    for name in (SECRET_FILE, ACCOUNTS_FILE, DATABASE_FILE):
        assert os.path.exists(os.path.join(instance, name))
    assert oct(os.stat(os.path.join(instance, SECRET_FILE)).st_mode & 0o777) == "0o600"

    again = start_demo(instance, port=0, sandbox_port=0, worker_interval=0.2)
    try:
        assert again.accounts == demo.accounts  # same accounts, same passwords
        assert open(os.path.join(instance, SECRET_FILE)).read() == first_secret
        assert again.wait_for_reviews(3) == 3  # the earlier run's pauses died with its sandbox
        with again.app.app_context():
            assert len(list(db.session.scalars(select(User)))) == 3
            statuses = sorted(e.status.value for e in db.session.scalars(select(Execution)))
            assert statuses.count(ExecutionStatus.FAILED.value) == 3
        _login(again.url, "reviewer", again.accounts["reviewer"])  # tokens and sessions still work
    finally:
        again.stop()
