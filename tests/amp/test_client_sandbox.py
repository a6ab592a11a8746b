"""The AMP client against the sandbox served on a real loopback port: every documented
status code, timeouts, auth failures, and the exact /resume body."""

from __future__ import annotations

import json
import socket
import time

import pytest

from reviewapp.amp.client import (
    AmpAmbiguous,
    AmpClient,
    AmpError,
    AmpRejected,
    AmpUnauthorized,
    AmpUnavailable,
    build_resume_body,
    redact_body,
)
from reviewapp.amp.crews import get_crew

from .conftest import INPUTS, sandbox_client


def _paused(sandbox, name="research"):
    """Kick off a sandbox crew without webhooks and wait until it pauses for review."""
    client = sandbox_client(sandbox, name)
    kickoff_id = client.kickoff(INPUTS[name], webhooks={})
    assert sandbox.wait_idle(5)
    assert client.status(kickoff_id).state == "waiting"
    return client, kickoff_id


def _resume(kickoff_id, task_id, approve, feedback="ok"):
    return {"execution_id": kickoff_id, "task_id": task_id, "human_feedback": feedback, "is_approve": approve}


def test_health_inputs_and_bearer(sandbox):
    client = sandbox_client(sandbox)
    assert client.health() == "Healthy"
    assert client.inputs() == ["topic", "current_year"]
    calls = sandbox.calls()
    assert [c["path"] for c in calls] == ["/", "/inputs"]
    assert all(c["bearer"] and c["auth_ok"] for c in calls)


def test_kickoff_sends_inputs_meta_and_webhooks(sandbox):
    client = sandbox_client(sandbox)
    hooks = {"taskWebhookUrl": "http://127.0.0.1:9/t", "humanInputWebhook": {"url": "http://127.0.0.1:9/h"}}
    kickoff_id = client.kickoff(INPUTS["research"], meta={"k": 1}, webhooks=hooks)
    assert len(kickoff_id) == 36
    body = sandbox.calls("/kickoff")[0]["body"]
    assert body == {"inputs": INPUTS["research"], "meta": {"k": 1}, **hooks}


def test_kickoff_with_missing_inputs_is_422_with_the_names(sandbox):
    with pytest.raises(AmpRejected) as err:
        sandbox_client(sandbox).kickoff({"topic": "x"}, webhooks={})
    assert err.value.http_status == 422
    assert err.value.missing_inputs == ["current_year"]
    assert "Missing required inputs" in str(err.value)


def test_status_of_unknown_execution_is_404(sandbox):
    with pytest.raises(AmpRejected) as err:
        sandbox_client(sandbox).status("00000000-0000-0000-0000-000000000000")
    assert err.value.not_found and err.value.http_status == 404


def test_status_follows_the_execution(sandbox):
    client, kickoff_id = _paused(sandbox)
    status = client.status(kickoff_id)
    assert status.raw["state"] == "PENDING_HUMAN_INPUT"
    assert status.raw["last_step"]["task_id"] == "research_task"
    client.resume(_resume(kickoff_id, "research_task", True))
    assert sandbox.wait_idle(5)
    assert client.status(kickoff_id).raw["last_step"]["task_id"] == "analysis_task"
    client.resume(_resume(kickoff_id, "analysis_task", True))
    done = client.status(kickoff_id)
    assert done.state == "completed" and "Research notes" in done.result


def test_documented_status_shape_is_understood(sandbox):
    client, kickoff_id = _paused(sandbox, "travel")
    status = client.status(kickoff_id)
    assert status.raw["status"] == "pending_human_input" and status.state == "waiting"


def test_resume_answers_resumed_retrying_completed(sandbox):
    client, kickoff_id = _paused(sandbox)
    retry = client.resume(_resume(kickoff_id, "research_task", False, "Shorter please."))
    assert (retry.status, retry.http_status) == ("retrying", 200)
    assert sandbox.wait_idle(5)
    assert client.resume(_resume(kickoff_id, "research_task", True)).status == "resumed"
    assert sandbox.wait_idle(5)
    completed = client.resume(_resume(kickoff_id, "analysis_task", True))
    assert completed.status == "completed" and completed.message


def test_resume_when_not_pending_is_400_not_pending(sandbox):
    client, kickoff_id = _paused(sandbox, "support")
    client.resume(_resume(kickoff_id, "reply_task", True))
    with pytest.raises(AmpRejected) as err:
        client.resume(_resume(kickoff_id, "reply_task", True))
    assert err.value.http_status == 400 and err.value.not_pending
    assert "pending human input" in err.value.body_text


def test_resume_unknown_execution_or_task_is_404(sandbox):
    client, kickoff_id = _paused(sandbox, "support")
    for body in (_resume("00000000-0000-0000-0000-000000000000", "reply_task", True),
                 _resume(kickoff_id, "no_such_task", True)):
        with pytest.raises(AmpRejected) as err:
            client.resume(body)
        assert err.value.not_found and not err.value.not_pending


@pytest.mark.parametrize("call", ["health", "inputs", "status", "kickoff", "resume"])
def test_wrong_token_is_unauthorized_everywhere(sandbox, call):
    client = sandbox_client(sandbox, token="tok-wrong-0000")
    args = {"status": ("x",), "kickoff": (INPUTS["research"],), "resume": (_resume("x", "t", True),)}
    kwargs = {"webhooks": {}} if call == "kickoff" else {}
    with pytest.raises(AmpUnauthorized) as err:
        getattr(client, call)(*args.get(call, ()), **kwargs)
    assert err.value.http_status == 401


def test_injected_500_is_unavailable_then_recovers(sandbox):
    sandbox.set_fault("500", path="/inputs", times=1)
    client = sandbox_client(sandbox)
    with pytest.raises(AmpUnavailable) as err:
        client.inputs()
    assert err.value.http_status == 500
    assert client.inputs() == ["topic", "current_year"]


@pytest.mark.parametrize(("mode", "error", "flag"), [
    ("401", AmpUnauthorized, None), ("404", AmpRejected, "not_found"), ("400", AmpRejected, "not_pending"),
])
def test_injected_error_codes(sandbox, mode, error, flag):
    sandbox.set_fault(mode, path="/resume")
    with pytest.raises(error) as err:
        sandbox_client(sandbox).resume(_resume("x", "t", True))
    assert err.value.http_status == int(mode)
    if flag:
        assert getattr(err.value, flag)


def test_slow_answer_within_the_read_timeout_succeeds(sandbox):
    sandbox.set_fault("slow", seconds=0.3)
    start = time.monotonic()
    assert sandbox_client(sandbox, read_timeout=3).health() == "Healthy"
    assert time.monotonic() - start >= 0.3


def test_timeout_after_sending_is_ambiguous_and_was_applied(sandbox):
    client, kickoff_id = _paused(sandbox, "support")
    sandbox.set_fault("timeout", path="/resume", seconds=3)
    hasty = sandbox_client(sandbox, "support", read_timeout=0.3)
    with pytest.raises(AmpAmbiguous) as err:
        hasty.resume(_resume(kickoff_id, "reply_task", True))
    assert err.value.http_status is None
    sandbox.clear_faults()
    # The crew did receive it: that is why a retry must ask /status first.
    assert client.status(kickoff_id).state == "completed"


def test_connection_refused_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = AmpClient(f"http://127.0.0.1:{port}", "tok", connect_timeout=0.5, read_timeout=0.5)
    with pytest.raises(AmpUnavailable) as err:
        client.resume(_resume("x", "t", True))
    assert err.value.http_status is None


def test_errors_never_contain_the_token(sandbox):
    client = sandbox_client(sandbox, token="tok-should-not-leak-9876")
    with pytest.raises(AmpError) as err:
        client.inputs()
    assert "tok-should-not-leak" not in str(err.value) + repr(client) + (err.value.body_text or "")


def test_resume_body_is_contract_section_1_plus_our_webhooks(app, crew, secret_of):
    crew("research")
    with app.test_request_context():
        body = build_resume_body(get_crew("research"), execution_id="6f140412-8094-43fc-a6f0-70e65f912172",
                                 task_id="analysis_task", human_feedback="More data.", is_approve=0)
    assert list(body)[:4] == ["execution_id", "task_id", "human_feedback", "is_approve"]
    assert body["is_approve"] is False
    assert set(body) == {"execution_id", "task_id", "human_feedback", "is_approve", "taskWebhookUrl",
                         "stepWebhookUrl", "crewWebhookUrl", "humanInputWebhook"}
    base = "http://127.0.0.1:5000/hooks/amp/research/"
    assert body["taskWebhookUrl"].startswith(base + "task/")
    assert body["humanInputWebhook"] == {
        "url": base + "human-input",
        "authentication": {"strategy": "bearer", "token": secret_of("research")},
    }
    shown = redact_body(body)
    assert secret_of("research") not in json.dumps(shown)
    assert shown["humanInputWebhook"]["authentication"]["token"] == "•••"
    assert shown["taskWebhookUrl"] == base + "task/•••"
    assert body["humanInputWebhook"]["authentication"]["token"] == secret_of("research")  # not mutated
