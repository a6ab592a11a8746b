from __future__ import annotations

from reviewapp.amp.crews import get_crew
from reviewapp.amp.crypto import decrypt_secret
from reviewapp.amp.executions import ingest_human_input
from reviewapp.extensions import db
from reviewapp.models import Decision


def test_crews_add_list_set_token_remove(app, runner):
    r = runner.invoke(args=["crews", "add", "research", "--url", "https://research.example.com/",
                            "--token", "tok-cli-secret-4321"])
    assert r.exit_code == 0, r.output
    assert "tok-cli-secret" not in r.output and "…4321" in r.output
    r = runner.invoke(args=["crews", "add", "travel", "--url", "https://travel.example.com"],
                      input="tok-prompted-8765\n")
    assert r.exit_code == 0, r.output
    assert "tok-prompted" not in r.output
    r = runner.invoke(args=["crews", "list"])
    assert "research" in r.output and "https://travel.example.com" in r.output and "…8765" in r.output
    assert "tok-cli-secret" not in r.output
    with app.app_context():
        assert decrypt_secret(get_crew("travel").token_encrypted) == "tok-prompted-8765"
        get_crew("travel").token_broken = True
        db.session.commit()
    assert "TOKEN REFUSED" in runner.invoke(args=["crews", "list"]).output
    r = runner.invoke(args=["crews", "set-token", "travel", "--token", "tok-replaced-0000"])
    assert r.exit_code == 0, r.output
    with app.app_context():
        assert not get_crew("travel").token_broken
    r = runner.invoke(args=["crews", "remove", "travel"])
    assert r.exit_code == 0, r.output
    with app.app_context():
        assert get_crew("travel") is None


def test_crews_cli_errors_are_clear(app, runner, make_user):
    assert runner.invoke(args=["crews", "list"]).output.strip() == "No crews."
    r = runner.invoke(args=["crews", "add", "Bad Name", "--url", "https://x", "--token", "t"])
    assert r.exit_code != 0 and "lowercase" in r.output
    r = runner.invoke(args=["crews", "add", "ok", "--url", "not a url", "--token", "t"])
    assert r.exit_code != 0 and "https://" in r.output
    runner.invoke(args=["crews", "add", "ok", "--url", "https://x", "--token", "t"])
    r = runner.invoke(args=["crews", "add", "ok", "--url", "https://x", "--token", "t"])
    assert r.exit_code != 0 and "already exists" in r.output
    for command in (["crews", "remove", "ghost"], ["crews", "set-token", "ghost", "--token", "t"]):
        r = runner.invoke(args=command)
        assert r.exit_code != 0 and "No crew named 'ghost'" in r.output
    user = make_user("rev", "reviewer")
    with app.app_context():
        round_, _ = ingest_human_input(get_crew("ok"), {"execution_id": "e", "task_id": "t", "output": "o"}, raw="{}")
        db.session.add(Decision(round=round_, reviewer_id=user.id, is_approve=True, feedback=""))
        db.session.commit()
    r = runner.invoke(args=["crews", "remove", "ok"])
    assert r.exit_code != 0 and "--delete-history" in r.output
    assert runner.invoke(args=["crews", "remove", "ok", "--delete-history"]).exit_code == 0


def test_sandbox_and_demo_commands_are_registered(runner):
    r = runner.invoke(args=["sandbox", "--help"])
    assert r.exit_code == 0 and "--port" in r.output
    r = runner.invoke(args=["demo", "--help"])
    assert r.exit_code == 0 and "--sandbox-port" in r.output
