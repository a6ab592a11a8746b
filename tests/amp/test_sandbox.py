"""The sandbox itself: contract details, feedback-aware agents, webhooks (including
"not carried over"), and the fault control API."""

from __future__ import annotations

import requests

from reviewapp.amp.sandbox import EXAMPLE_CREWS, Sandbox, create_sandbox_app
from reviewapp.amp.serving import BackgroundServer

from .conftest import INPUTS, sandbox_client


class Recorder:
    """A loopback webhook receiver that records what the sandbox sends."""

    def __init__(self):
        from flask import Flask, request

        self.received = []
        app = Flask("recorder")

        @app.post("/<path:kind>")
        def receive(kind):
            self.received.append({"kind": kind, "json": request.get_json(), "auth": request.headers.get("Authorization")})
            return {"ok": True}

        self.server = BackgroundServer(app).start()
        self.url = self.server.url

    def kinds(self):
        return [r["kind"] for r in self.received]

    def hooks(self, auth=None):
        return {"taskWebhookUrl": f"{self.url}/task", "stepWebhookUrl": f"{self.url}/step",
                "crewWebhookUrl": f"{self.url}/crew",
                "humanInputWebhook": {"url": f"{self.url}/human", "authentication":
                                      auth or {"strategy": "bearer", "token": "hook-secret"}}}


def _resume(kickoff_id, task_id, approve, feedback="", **hooks):
    return {"execution_id": kickoff_id, "task_id": task_id, "human_feedback": feedback, "is_approve": approve, **hooks}


def test_webhooks_are_sent_with_auth_and_not_carried_over(sandbox):
    recorder = Recorder()
    try:
        client = sandbox_client(sandbox, "research")
        kickoff_id = client.kickoff(INPUTS["research"], meta={"m": 1}, webhooks=recorder.hooks())
        assert sandbox.wait_idle(5)
        assert recorder.kinds() == ["step", "human"]
        human = recorder.received[1]
        assert human["auth"] == "Bearer hook-secret"
        assert human["json"]["execution_id"] == kickoff_id and human["json"]["task_id"] == "research_task"
        assert human["json"]["meta"] == {"m": 1}

        # Resume WITH the webhooks: the next pause is notified again.
        client.resume(_resume(kickoff_id, "research_task", False, "Add numbers please.", **recorder.hooks()))
        assert sandbox.wait_idle(5)
        assert recorder.kinds()[-2:] == ["step", "human"]
        revised = recorder.received[-1]["json"]["output"]
        assert "Add numbers please." in revised and "In figures:" in revised

        # Resume WITHOUT them: AMP does not carry them over, so nothing more arrives.
        before = len(recorder.received)
        client.resume(_resume(kickoff_id, "research_task", True))
        assert sandbox.wait_idle(5)
        assert len(recorder.received) == before
        assert client.status(kickoff_id).raw["last_step"]["task_id"] == "analysis_task"
        assert {w["outcome"] for w in sandbox.webhook_calls()[-3:]} == {"no-url"}
    finally:
        recorder.server.stop()


def test_completion_sends_task_and_crew_webhooks(sandbox):
    recorder = Recorder()
    try:
        client = sandbox_client(sandbox, "support")
        kickoff_id = client.kickoff(INPUTS["support"], webhooks=recorder.hooks())
        assert sandbox.wait_idle(5)
        assert client.resume(_resume(kickoff_id, "reply_task", True, **recorder.hooks())).status == "completed"
        assert sandbox.wait_idle(5)
        assert recorder.kinds()[-2:] == ["task", "crew"]
        crew_payload = recorder.received[-1]["json"]
        assert crew_payload["kickoff_id"] == kickoff_id and "Ada" in crew_payload["result"]
        assert set(crew_payload["token_usage"]) == {"total_tokens", "prompt_tokens", "completion_tokens"}
        task_payload = recorder.received[-2]["json"]
        assert "task_id" not in task_payload and task_payload["name"] == "reply_task"
    finally:
        recorder.server.stop()


def test_basic_auth_human_input_webhook(sandbox):
    recorder = Recorder()
    try:
        hooks = recorder.hooks({"strategy": "basic", "username": "amp", "password": "pw"})
        sandbox_client(sandbox, "support").kickoff(INPUTS["support"], webhooks=hooks)
        assert sandbox.wait_idle(5)
        assert recorder.received[-1]["auth"].startswith("Basic ")
    finally:
        recorder.server.stop()


def test_notice_key_variants_per_crew(sandbox):
    """The three crews name the notification's fields differently (contract section 5)."""
    for name in ("research", "travel", "support"):
        sandbox_client(sandbox, name).kickoff(INPUTS[name], webhooks={"humanInputWebhook": {"url": "http://127.0.0.1:9/"}})
        assert sandbox.wait_idle(5)
    sent = [w["payload"] for w in sandbox.webhook_calls("human_input")]
    assert [{"execution_id", "task_id", "output"} <= set(sent[0]),
            {"kickoff_id", "task_name", "task_output"} <= set(sent[1]),
            {"kickoff_id", "name", "result"} <= set(sent[2])] == [True, True, True]


def test_only_loopback_webhooks_are_called(sandbox):
    sandbox_client(sandbox, "support").kickoff(
        INPUTS["support"], webhooks={"humanInputWebhook": {"url": "http://example.com/hook"}})
    assert sandbox.wait_idle(5)
    assert sandbox.webhook_calls("human_input")[0]["outcome"].startswith("refused")


def test_contract_errors(sandbox):
    base, token = sandbox.crew_url("research"), sandbox.crews["research"]
    auth = {"Authorization": f"Bearer {token}"}
    r = requests.post(f"{base}/resume", data="{oops", headers=auth, timeout=5)
    assert r.status_code == 400 and r.json()["error"] == "Bad Request"
    r = requests.post(f"{base}/resume", json=_resume("x", "t", "false"), headers=auth, timeout=5)
    assert r.status_code == 400 and "is_approve must be a boolean" in r.json()["message"]
    r = requests.post(f"{base}/kickoff", json={"inputs": {}}, headers=auth, timeout=5)
    assert r.status_code == 422 and r.json()["details"]["missing_inputs"] == ["topic", "current_year"]
    r = requests.get(f"{base}/inputs", timeout=5)
    assert r.status_code == 401 and r.json() == {"error": "Unauthorized", "message": "Invalid or missing bearer token."}
    r = requests.get(f"{sandbox.url}/nobody/inputs", headers=auth, timeout=5)
    assert r.status_code == 404
    kickoff_id = requests.post(f"{base}/kickoff", json={"inputs": INPUTS["research"]}, headers=auth, timeout=5).json()["kickoff_id"]
    r = requests.get(f"{base}/{kickoff_id}/status", headers=auth, timeout=5)  # the older path
    assert r.status_code == 200 and "state" in r.json()


def test_another_crews_token_is_refused(sandbox):
    r = requests.get(sandbox.crew_url("research") + "/inputs",
                     headers={"Authorization": f"Bearer {sandbox.crews['travel']}"}, timeout=5)
    assert r.status_code == 401


def test_fault_control_api(sandbox):
    control = f"{sandbox.url}/_sandbox/faults"
    assert requests.post(control, json={"mode": "500", "path": "/inputs", "times": 1}, timeout=5).status_code == 200
    client = sandbox_client(sandbox)
    assert requests.get(client.base_url + "/inputs", headers={"Authorization": f"Bearer {sandbox.crews['research']}"},
                        timeout=5).status_code == 500
    assert client.inputs() == ["topic", "current_year"]  # times=1: used up
    assert requests.post(control, json={"mode": "sideways"}, timeout=5).status_code == 400
    assert requests.post(control, json={"mode": "slow", "seconds": "x"}, timeout=5).status_code == 400
    requests.post(control, json={"mode": "401"}, timeout=5)
    assert requests.get(control, timeout=5).json()["faults"][0]["mode"] == "401"
    assert requests.delete(control, timeout=5).json() == {"faults": []}
    assert client.health() == "Healthy"
    assert requests.get(f"{sandbox.url}/_sandbox/calls?path=/inputs", timeout=5).json()["calls"]
    assert requests.post(f"{sandbox.url}/_sandbox/reset", timeout=5).json() == {"status": "reset"}
    assert sandbox.calls("/inputs") == []


def test_agents_are_deterministic_and_use_feedback():
    for spec in EXAMPLE_CREWS.values():
        for task in spec.tasks:
            inputs = INPUTS[spec.name]
            assert task.write(inputs, []) == task.write(inputs, [])
            if task.human_input:
                revised = task.write(inputs, ["Please cite your sources."])
                assert revised != task.write(inputs, []) and "Please cite your sources." in revised
    research = EXAMPLE_CREWS["research"].tasks[0]
    short = research.write(INPUTS["research"], ["Make it shorter."])
    assert short.count("\n- ") < research.write(INPUTS["research"], []).count("\n- ")


def test_sandbox_app_can_be_created_on_its_own():
    box = Sandbox()
    app = create_sandbox_app(box)
    client = app.test_client()
    assert client.get("/").json["crews"] == {"research": "/research", "travel": "/travel", "support": "/support"}
    token = box.crews["travel"]
    assert client.get("/travel/", headers={"Authorization": f"Bearer {token}"}).data == b"Healthy"
    box.close()
