"""A separate reviewapp process for the multi-process tests (run with ``python -m``).

    python -m tests.reviews.child race  <db_url> <public_url> <round_id> <username> <start_at>
    python -m tests.reviews.child crash <db_url> <public_url> <round_id> <username> <when>

``race`` logs in, waits until the wall-clock ``start_at`` and submits an approval,
printing the HTTP status. ``crash`` submits a decision and SIGKILLs itself right after
the commit, before any delivery code runs (``when=commit``), or inside the delivery just
before the request is sent (``when=lease``). Either way the job was committed leased to
the dead process.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from reviewapp import create_app
from tests.conftest import PASSWORD, _base_config


def _client(db_url: str, public_url: str, username: str):
    app = create_app(_base_config(db_url, PUBLIC_URL=public_url, AMP_READ_TIMEOUT=5.0))
    client = app.test_client()
    response = client.post("/login", data={"username": username, "password": PASSWORD})
    if response.status_code != 302:
        raise SystemExit(f"login failed for {username}: {response.status_code}")
    return client


def _die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def race(db_url: str, public_url: str, round_id: str, username: str, start_at: str) -> None:
    client = _client(db_url, public_url, username)
    time.sleep(max(0.0, float(start_at) - time.time()))
    response = client.post(f"/rounds/{round_id}/decide", data={"feedback": f"from {username}", "approve": "Approve"})
    print(response.status_code, flush=True)


def crash(db_url: str, public_url: str, round_id: str, username: str, when: str) -> None:
    client = _client(db_url, public_url, username)
    if when == "commit":
        from reviewapp.reviews import delivery

        delivery.deliver_leased = _die  # the view calls delivery.deliver_leased after its commit
    else:
        from reviewapp.amp import client as amp_client

        amp_client.AmpClient.resume = _die  # in the delivery, killed before sending
    client.get(f"/rounds/{round_id}")
    client.post(f"/rounds/{round_id}/decide", data={"feedback": "kept despite the crash", "approve": "Approve"})
    print("still alive", flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"race": race, "crash": crash}[command](*args)
