"""The client against an independent fake AMP written from the contract (not the
sandbox): FastAPI-style errors, documented and observed status shapes, malformed
answers, redirects, dropped connections."""

from __future__ import annotations

import json

import pytest

from reviewapp.amp.client import (
    AmpAmbiguous,
    AmpClient,
    AmpError,
    AmpRejected,
    AmpUnauthorized,
    AmpUnavailable,
)

RESUME = {"execution_id": "6f140412-8094-43fc-a6f0-70e65f912172", "task_id": "analysis_task",
          "human_feedback": "Please include more quantitative data.", "is_approve": False}


@pytest.fixture
def client(amp):
    return AmpClient(amp.url + "/", "tok-fake-1234", connect_timeout=1, read_timeout=1)


def test_resume_sends_exactly_the_body_with_bearer_and_json(amp, client):
    amp.answer("POST", "/resume", 200, {"status": "retrying", "message": "Task will be retried"})
    result = client.resume(RESUME)
    assert (result.status, result.message, result.http_status) == ("retrying", "Task will be retried", 200)
    sent = amp.received[0]
    assert sent["headers"]["Authorization"] == "Bearer tok-fake-1234"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["body"]) == RESUME
    assert b'"is_approve": false' in sent["body"]


@pytest.mark.parametrize("status", ["resumed", "retrying", "completed", "Resumed"])
def test_resume_statuses(amp, client, status):
    amp.answer("POST", "/resume", 200, {"status": status})
    assert client.resume(RESUME).status == status.lower()


@pytest.mark.parametrize("body", [{"status": "ok"}, {"message": "done"}, "Resumed", b"\xff\xfe", [1]])
def test_unexpected_200_resume_answer_is_an_error(amp, client, body):
    amp.answer("POST", "/resume", 200, body)
    with pytest.raises(AmpError) as err:
        client.resume(RESUME)
    assert type(err.value) is AmpError and err.value.http_status == 200


def test_any_400_on_resume_is_not_pending(amp, client):
    amp.answer("POST", "/resume", 400, {"error": "Bad Request", "message": "Invalid body"})
    with pytest.raises(AmpRejected) as err:
        client.resume(RESUME)
    assert err.value.not_pending and not err.value.not_found


def test_fastapi_style_422_names_the_missing_inputs(amp, client):
    amp.answer("POST", "/kickoff", 422, {"detail": [
        {"loc": ["body", "inputs", "topic"], "msg": "field required", "type": "missing"}]})
    with pytest.raises(AmpRejected) as err:
        client.kickoff({}, webhooks={})
    assert err.value.missing_inputs == ["topic"]
    assert "inputs.topic: field required" in str(err.value)


def test_fastapi_string_detail(amp, client):
    amp.answer("POST", "/kickoff", 422, {"detail": "Missing required inputs: topic"})
    with pytest.raises(AmpRejected, match="Missing required inputs: topic"):
        client.kickoff({}, webhooks={})


@pytest.mark.parametrize(("code", "error"), [
    (401, AmpUnauthorized), (403, AmpUnauthorized), (404, AmpRejected), (409, AmpRejected),
    (429, AmpUnavailable), (500, AmpUnavailable), (502, AmpUnavailable), (503, AmpUnavailable),
    (504, AmpAmbiguous),
])
def test_status_codes_map_to_errors(amp, client, code, error):
    amp.answer("GET", "/inputs", code, "<html>proxy page</html>", **{"Content-Type": "text/html"})
    with pytest.raises(error) as err:
        client.inputs()
    assert err.value.http_status == code and "proxy page" in err.value.body_text


def test_redirects_are_not_followed(amp, client):
    amp.answer("POST", "/resume", 307, {}, Location=amp.url + "/elsewhere")
    amp.answer("POST", "/elsewhere", 200, {"status": "resumed"})
    with pytest.raises(AmpRejected, match="redirect"):
        client.resume(RESUME)
    assert [r["path"] for r in amp.received] == ["/resume"]


def test_connection_dropped_after_sending_is_ambiguous(amp, client):
    amp.drop("POST", "/resume")
    with pytest.raises(AmpAmbiguous):
        client.resume(RESUME)
    assert amp.received and amp.received[0]["path"] == "/resume"


@pytest.mark.parametrize(("body", "state", "result", "error"), [
    ({"state": "SUCCESS", "result": "final text", "last_step": {}}, "completed", "final text", None),
    ({"state": "FAILED", "result": None}, "failed", None, None),
    ({"status": "error", "error": "boom"}, "failed", None, "boom"),
    ({"status": "completed", "result": {"raw": "from raw"}}, "completed", "from raw", None),
    ({"status": "running", "current_task": "t", "progress": {}}, "running", None, None),
    ({"state": "STARTED"}, "running", None, None),
    ({"state": "PENDING"}, "running", None, None),
    ({"state": "PENDING_HUMAN_INPUT"}, "waiting", None, None),
    ({"status": "Pending Human Input"}, "waiting", None, None),
    ({"status": "awaiting_human_feedback"}, "waiting", None, None),
    ({"state": "Sleeping"}, "unknown", None, None),
    ({}, "unknown", None, None),
])
def test_status_shapes(amp, client, body, state, result, error):
    amp.answer("GET", "/status/abc-1", 200, body)
    status = client.status("abc-1")
    assert (status.state, status.result, status.error) == (state, result, error)
    assert status.raw == body


def test_status_id_is_quoted_into_the_path(amp, client):
    amp.answer("GET", "/status/a%2Fb%20c", 200, {"state": "RUNNING"})
    assert client.status("a/b c").state == "running"


def test_status_that_is_not_json_is_an_error(amp, client):
    amp.answer("GET", "/status/x", 200, "RUNNING", **{"Content-Type": "text/plain"})
    with pytest.raises(AmpError, match="not a JSON object"):
        client.status("x")


@pytest.mark.parametrize(("body", "expected"), [
    ({"kickoff_id": "k-1"}, "k-1"), ({"execution_id": "e-2"}, "e-2"), ({"kickoff_id": 17}, "17"),
])
def test_kickoff_id_variants(amp, client, body, expected):
    amp.answer("POST", "/kickoff", 200, body)
    assert client.kickoff({"topic": "x"}, webhooks={}) == expected


@pytest.mark.parametrize("body", [{}, {"kickoff_id": ""}, {"kickoff_id": None}, ["k"]])
def test_kickoff_without_an_id_is_an_error(amp, client, body):
    amp.answer("POST", "/kickoff", 200, body)
    with pytest.raises(AmpError):
        client.kickoff({"topic": "x"}, webhooks={})


def test_inputs_tolerates_objects_and_rejects_garbage(amp, client):
    amp.answer("GET", "/inputs", 200, {"inputs": [{"name": "topic"}, "current_year", 3, ""]})
    assert client.inputs() == ["topic", "current_year"]
    amp.answer("GET", "/inputs", 200, {"inputs": "topic"})
    with pytest.raises(AmpError):
        client.inputs()


def test_base_url_with_a_path_prefix(amp):
    amp.answer("GET", "/crew-a/", 200, "Healthy", **{"Content-Type": "text/plain"})
    client = AmpClient(amp.url + "/crew-a/", "t", connect_timeout=1, read_timeout=1)
    assert client.health() == "Healthy"
