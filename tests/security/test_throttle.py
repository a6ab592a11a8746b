"""Login throttling: per account and per address, before hashing, short growing locks,
shared through the database, audited and logged."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from reviewapp import create_app
from reviewapp.auth import passwords, throttle
from reviewapp.extensions import db
from reviewapp.models import AuditEvent, LoginThrottle
from tests.conftest import PASSWORD, _base_config


def attempt(client, username="ann", password="wrong password", ip="198.51.100.7"):
    return client.post(
        "/login",
        data={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def fail(client, times, **kw):
    return [attempt(client, **kw).status_code for _ in range(times)]


def row(app, key):
    with app.app_context():
        return db.session.get(LoginThrottle, key)


@pytest.fixture
def hash_calls(monkeypatch):
    """Counts every password hash verification (known and unknown users)."""
    calls = []
    real = passwords.verify_password

    def counting(stored, given):
        calls.append(given)
        return real(stored, given)

    monkeypatch.setattr(passwords, "verify_password", counting)
    return calls


class TestPerAccount:
    def test_five_failures_lock_the_account_briefly(self, client, make_user, clock):
        make_user("ann")
        assert fail(client, 5) == [200] * 5
        response = attempt(client, password=PASSWORD)  # even the right password waits
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "30"
        assert "Too many failed attempts for this account" in response.get_data(as_text=True)
        clock.advance(seconds=31)
        assert attempt(client, password=PASSWORD).status_code == 302

    def test_no_hash_is_computed_while_locked(self, client, make_user, clock, hash_calls):
        make_user("ann")
        fail(client, 5)
        assert len(hash_calls) == 5
        assert fail(client, 10, password=PASSWORD) == [429] * 10
        assert len(hash_calls) == 5

    def test_unknown_names_are_throttled_alike(self, client, clock, hash_calls):
        assert fail(client, 5, username="nobody") == [200] * 5
        assert attempt(client, username="nobody").status_code == 429
        assert len(hash_calls) == 5  # burn_time verified a dummy hash each time, not the 6th

    def test_locks_grow_and_are_capped(self, app, client, make_user, clock):
        make_user("ann")
        fail(client, 5)
        seen = []
        for _ in range(8):
            lock = row(app, "account:ann").locked_until - clock.current
            seen.append(int(lock.total_seconds()))
            clock.advance(seconds=seen[-1] + 1)
            assert attempt(client).status_code == 200  # lock over: one more guess allowed
        assert seen == [30, 60, 120, 240, 480, 900, 900, 900]

    def test_locks_while_locked_do_not_extend_the_lock(self, app, client, make_user, clock):
        make_user("ann")
        fail(client, 5)
        until = row(app, "account:ann").locked_until
        fail(client, 20)
        assert row(app, "account:ann").locked_until == until
        assert row(app, "account:ann").failures == 5

    def test_counters_start_over_after_the_window(self, app, client, make_user, clock):
        make_user("ann")
        fail(client, 4)
        clock.advance(hours=1, seconds=1)
        assert fail(client, 4) == [200] * 4  # 4 + 4 > 5, but a new window
        assert row(app, "account:ann").locked_until is None
        assert row(app, "account:ann").failures == 4

    def test_a_right_password_clears_the_account_counter(self, app, client, make_user, clock):
        make_user("ann")
        fail(client, 4)
        assert attempt(client, password=PASSWORD).status_code == 302
        assert row(app, "account:ann") is None

    def test_the_owner_is_not_locked_out_of_a_known_browser(self, app, make_user, clock):
        make_user("ann")
        owner, attacker = app.test_client(), app.test_client()
        assert attempt(owner, password=PASSWORD, ip="192.0.2.1").status_code == 302
        owner.post("/logout")
        assert fail(attacker, 6, ip="203.0.113.5")[-1] == 429
        assert attempt(attacker, password=PASSWORD, ip="203.0.113.5").status_code == 429
        assert attempt(owner, password=PASSWORD, ip="192.0.2.1").status_code == 302

    def test_a_known_device_gets_past_a_locked_shared_address(self, app, make_user, clock):
        make_user("ann")
        owner, neighbour = app.test_client(), app.test_client()
        attempt(owner, password=PASSWORD)
        owner.post("/logout")
        codes = [attempt(neighbour, username=f"u{i}").status_code for i in range(21)]
        assert codes[-1] == 429  # the office address is locked for strangers...
        assert attempt(neighbour, password=PASSWORD).status_code == 429
        assert attempt(owner, password=PASSWORD).status_code == 302  # ...not for ann's browser

    def test_a_known_device_is_throttled_too(self, app, make_user, clock):
        make_user("ann")
        owner = app.test_client()
        attempt(owner, password=PASSWORD)
        owner.post("/logout")
        assert fail(owner, 6)[-1] == 429


class TestPerAddress:
    def test_many_names_from_one_address_are_throttled(self, client, make_user, clock, hash_calls):
        make_user("ann")
        codes = [attempt(client, username=f"user{i}").status_code for i in range(20)]
        assert codes == [200] * 20
        response = attempt(client, password=PASSWORD)
        assert response.status_code == 429
        assert "from your network" in response.get_data(as_text=True)
        assert len(hash_calls) == 20
        assert attempt(client, password=PASSWORD, ip="198.51.100.8").status_code == 302

    def test_a_success_does_not_reset_the_address_counter(self, app, client, make_user, clock):
        make_user("ann")
        fail(client, 3, username="x")
        attempt(client, password=PASSWORD)
        assert row(app, "ip:198.51.100.7").failures == 3

    @pytest.mark.parametrize(
        ("address", "unit"),
        [
            ("198.51.100.7", "198.51.100.7"),
            ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
            ("::ffff:198.51.100.7", "198.51.100.7"),
            ("not an address", "unknown"),
            (None, "unknown"),
        ],
    )
    def test_ipv6_clients_count_by_their_64(self, address, unit):
        assert throttle.client_network(address) == unit


def test_locks_are_audited_and_logged(app, client, make_user, clock, caplog):
    make_user("ann")
    with caplog.at_level(logging.INFO, logger="reviewapp"):
        fail(client, 5, password="Tr0ub4dor&3-typed")
        attempt(client)
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login_throttled")))
    assert [r.details["scope"] for r in rows] == ["account"]
    assert rows[0].details["locked_seconds"] == 30 and rows[0].source_ip == "198.51.100.7"
    messages = [r.getMessage() for r in caplog.records]
    assert any("event=login_throttled" in m for m in messages)
    assert any("login refused while throttled" in m for m in messages)
    assert not any("Tr0ub4dor" in m for m in messages)  # typed passwords never logged


def test_state_is_shared_between_app_processes(app, client, make_user, db_url, clock):
    """A second app (another worker process) on the same database sees the lock."""
    make_user("ann")
    fail(client, 5)
    other = create_app(_base_config(db_url))
    assert attempt(other.test_client(), password=PASSWORD).status_code == 429
    with other.app_context():
        db.engine.dispose()


def test_concurrent_failures_are_all_counted(app, clock):
    keys_per_thread, threads = 5, 6
    errors = []

    def worker():
        try:
            with app.test_request_context():
                for _ in range(keys_per_thread):
                    throttle.register_failure(throttle.login_keys("ann", "192.0.2.9"))
                    db.session.commit()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert errors == []
    assert row(app, "account:ann").failures == keys_per_thread * threads
    assert row(app, "ip:192.0.2.9").failures == keys_per_thread * threads


def test_throttling_can_be_switched_off(app, client, make_user, clock):
    app.config["LOGIN_THROTTLE_ENABLED"] = False
    make_user("ann")
    fail(client, 30)
    assert attempt(client, password=PASSWORD).status_code == 302


def test_policy_arithmetic():
    policy = throttle.Policy(free=5, first_lock=30, max_lock=900, window=3600)
    assert [policy.lock_seconds(n) for n in (1, 4, 5, 6, 9, 10, 500)] == [0, 0, 30, 60, 480, 900, 900]
    assert timedelta(seconds=policy.lock_seconds(10**6)) == timedelta(minutes=15)
