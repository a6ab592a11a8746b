"""A local stand-in for CrewAI AMP, for the demo, for development and for tests.

It implements the contract in ``../shared/amp-contract.md`` for a few built-in crews,
each served below its own base URL ``http://HOST:PORT/<crew>``:

- ``GET /`` (``Healthy``), ``GET /inputs``, ``POST /kickoff``, ``GET /status/{id}``
  (and the older ``/{id}/status``), ``POST /resume``; Bearer auth; the documented
  error bodies and codes (400, 401, 404, 422 with ``details.missing_inputs``, 500).
- Every task pauses for human input. The "agents" are deterministic text generators
  (no model, no network): a revision visibly quotes and applies the reviewer's feedback.
- It calls the webhook URLs it was given (``humanInputWebhook`` with its
  authentication, then task/step/crew webhooks), in a background thread with a
  timeout, loopback addresses only. Webhooks are **not carried over**: a ``/resume``
  without webhook URLs means no further notifications for that execution.
- Fault injection, from Python (:meth:`Sandbox.set_fault`) or over HTTP
  (``POST /_sandbox/faults``): ``500``, ``401``, ``404``, ``400``, ``slow`` (answer
  after ``seconds``), ``timeout`` (apply the request, then answer only after
  ``seconds``: the caller times out not knowing it was applied), ``drop_webhooks``.

Run it with ``flask --app app sandbox``. It keeps everything in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask, Response, abort, jsonify, request

from .serving import BackgroundServer

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
FAULT_MODES = ("500", "401", "404", "400", "slow", "timeout", "drop_webhooks")
ERROR_TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 422: "Validation Error",
                500: "Internal Server Error"}
WEBHOOK_FIELDS = ("taskWebhookUrl", "stepWebhookUrl", "crewWebhookUrl")


# --------------------------------------------------------------------------- the "agents"


def _number(seed: str, low: int, high: int) -> int:
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return low + int.from_bytes(digest[:4], "big") % (high - low + 1)


def _apply_feedback(points: list[str], feedback: list[str], seed: str) -> list[str]:
    """Change the draft according to the latest feedback (keyword rules, deterministic)."""
    if not feedback:
        return points
    latest = feedback[-1].lower()
    changed = list(points)
    if any(word in latest for word in ("short", "brief", "concise", "shorter")):
        changed = changed[:2]
    if any(word in latest for word in ("number", "data", "quantitative", "figure", "statistic")):
        changed.append(f"In figures: {_number(seed + 'a', 12, 87)}% of the cases reviewed, "
                       f"{_number(seed + 'b', 3, 40)} examples, a {_number(seed + 'c', 2, 9)}x difference.")
    if any(word in latest for word in ("source", "cite", "reference", "citation")):
        changed.append("Sources (sandbox placeholders, not real publications): "
                       f"Survey {_number(seed + 'd', 2019, 2024)}; Field report no. {_number(seed + 'e', 10, 99)}.")
    if changed == points:
        changed.append(f"Added in response to the review: {feedback[-1].strip()[:200]}")
    return changed


def _document(title: str, points: list[str], feedback: list[str]) -> str:
    lines = [f"# {title}"]
    if feedback:
        lines.append(f"Revision {len(feedback)}. The reviewer asked: \u201c{feedback[-1].strip()}\u201d")
        lines.append("Changes made: the points below were rewritten to follow that feedback.")
    else:
        lines.append("First draft.")
    lines.extend(f"- {point}" for point in points)
    return "\n".join(lines)


def research_notes(inputs: dict[str, Any], feedback: list[str]) -> str:
    topic, year = inputs.get("topic", "the topic"), inputs.get("current_year", "this year")
    points = [
        f"{topic}: the state of the field in {year}, summarised from three angles.",
        f"The main open question about {topic} is cost at scale.",
        f"Two groups disagree about how quickly {topic} will mature.",
        "A pilot would settle most of the remaining doubts.",
    ]
    return _document(f"Research notes on {topic}", _apply_feedback(points, feedback, str(topic)), feedback)


def analysis_report(inputs: dict[str, Any], feedback: list[str]) -> str:
    topic = inputs.get("topic", "the topic")
    points = [
        f"Recommendation: fund a small pilot of {topic}.",
        "Risk: the supplier market is thin.",
        "Opportunity: early results can be published.",
    ]
    return _document(f"Analysis of {topic}", _apply_feedback(points, feedback, f"an-{topic}"), feedback)


def itinerary(inputs: dict[str, Any], feedback: list[str]) -> str:
    place, days = inputs.get("destination", "the city"), str(inputs.get("days", "3"))
    count = max(1, min(int(days) if days.isdigit() else 3, 7))
    points = [f"Day {n}: {place} — {activity}" for n, activity in
              zip(range(1, count + 1), ["old town walk", "museum morning", "market and river",
                                        "day trip", "food tour", "park and views", "free day"],
                  strict=False)]
    return _document(f"{count}-day itinerary for {place}", _apply_feedback(points, feedback, str(place)), feedback)


def packing_list(inputs: dict[str, Any], feedback: list[str]) -> str:
    return f"Packing list for {inputs.get('destination', 'the trip')}: shoes, adapter, rain jacket."


def support_reply(inputs: dict[str, Any], feedback: list[str]) -> str:
    name, question = inputs.get("customer_name", "there"), inputs.get("question", "your question")
    points = [
        f"Hello {name}, thank you for writing to us about: {question}",
        "We have looked into it and here is what you can do next.",
        "Reply to this message if anything is still unclear.",
    ]
    return _document("Reply to the customer", _apply_feedback(points, feedback, str(name)), feedback)


@dataclass(frozen=True)
class TaskSpec:
    id: str
    agent: str
    description: str
    expected_output: str
    write: Callable[[dict[str, Any], list[str]], str]
    human_input: bool = True


@dataclass(frozen=True)
class CrewSpec:
    name: str
    inputs: tuple[str, ...]
    tasks: tuple[TaskSpec, ...]
    # "observed" status: {"state": "PENDING_HUMAN_INPUT", "last_step": {...}};
    # "documented": {"status": "running" | ..., "current_task": ...} (no task output)
    status_shape: str
    # key names in the human-input notification: (execution id, task id, output)
    notice_keys: tuple[str, str, str]


EXAMPLE_CREWS: dict[str, CrewSpec] = {
    spec.name: spec
    for spec in (
        CrewSpec(
            name="research",
            inputs=("topic", "current_year"),
            tasks=(
                TaskSpec("research_task", "Senior researcher", "Research the topic.",
                         "A short list of findings.", research_notes),
                TaskSpec("analysis_task", "Analyst", "Turn the findings into a recommendation.",
                         "A recommendation with risks.", analysis_report),
            ),
            status_shape="observed",
            notice_keys=("execution_id", "task_id", "output"),
        ),
        CrewSpec(
            name="travel",
            inputs=("destination", "days"),
            tasks=(
                TaskSpec("itinerary_task", "Travel planner", "Plan the days.",
                         "A day-by-day itinerary.", itinerary),
                TaskSpec("packing_task", "Travel planner", "List what to pack.",
                         "A packing list.", packing_list, human_input=False),
            ),
            status_shape="documented",
            notice_keys=("kickoff_id", "task_name", "task_output"),
        ),
        CrewSpec(
            name="support",
            inputs=("customer_name", "question"),
            tasks=(
                TaskSpec("reply_task", "Support agent", "Answer the customer.",
                         "A friendly, correct reply.", support_reply),
            ),
            status_shape="observed",
            notice_keys=("kickoff_id", "name", "result"),
        ),
    )
}


# --------------------------------------------------------------------------- state


@dataclass
class SandboxExecution:
    id: str
    crew: CrewSpec
    inputs: dict[str, Any]
    meta: Any
    webhooks: dict[str, Any]
    state: str = "RUNNING"  # RUNNING | PENDING_HUMAN_INPUT | SUCCESS | FAILED
    task_index: int = 0
    feedback: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    last_output: str | None = None
    result: str | None = None

    @property
    def task(self) -> TaskSpec:
        return self.crew.tasks[min(self.task_index, len(self.crew.tasks) - 1)]


@dataclass
class Fault:
    mode: str
    path: str | None = None  # "/resume", "/kickoff", "/status", "/inputs", "/"
    crew: str | None = None
    times: int | None = None  # None: until cleared
    seconds: float = 1.0

    def matches(self, crew: str, path: str) -> bool:
        if self.crew is not None and self.crew != crew:
            return False
        return self.path is None or path == self.path or path.startswith(self.path.rstrip("/") + "/")


@dataclass
class Answer:
    status: int
    body: Any  # dict -> JSON, str -> text/plain

    def response(self) -> Response:
        if isinstance(self.body, str):
            return Response(self.body, status=self.status, mimetype="text/plain")
        response = jsonify(self.body)
        response.status_code = self.status
        return response


def _error(status: int, message: str, **extra: Any) -> Answer:
    return Answer(status, {"error": ERROR_TITLES.get(status, "Error"), "message": message, **extra})


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Sandbox:
    """The sandbox's state, its background webhook sender and its fault switches."""

    def __init__(
        self,
        crews: dict[str, CrewSpec] | None = None,
        tokens: dict[str, str] | None = None,
        *,
        step_delay: float = 0.05,
        webhook_timeout: float = 3.0,
    ) -> None:
        self.specs = dict(crews or EXAMPLE_CREWS)
        tokens = tokens or {}
        self.crews: dict[str, str] = {
            name: tokens.get(name) or f"sbx-{name}-{secrets.token_urlsafe(18)}" for name in self.specs
        }
        self.step_delay = step_delay
        self.webhook_timeout = webhook_timeout
        self.url: str | None = None
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._executions: dict[str, SandboxExecution] = {}
        self._calls: list[dict[str, Any]] = []
        self._webhooks: list[dict[str, Any]] = []
        self._faults: list[Fault] = []
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._pending = 0
        self._worker: threading.Thread | None = None
        self._server: BackgroundServer | None = None
        self._http = requests.Session()
        # Loopback calls only: no proxy from the environment applies (and reading it on
        # every webhook costs more than sending it).
        self._http.trust_env = False

    # ----------------------------------------------------------------- control (Python API)

    def crew_url(self, name: str) -> str:
        if self.url is None:
            raise RuntimeError("the sandbox is not served yet (call serve())")
        return f"{self.url}/{name}"

    def set_fault(self, mode: str, **kw: Any) -> None:
        """Inject a fault: ``mode`` in FAULT_MODES; ``path``, ``crew``, ``times``, ``seconds``."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; use one of {', '.join(FAULT_MODES)}")
        unknown = set(kw) - {"path", "crew", "times", "seconds"}
        if unknown:
            raise ValueError(f"unknown fault option(s): {', '.join(sorted(unknown))}")
        times, seconds = kw.get("times"), kw.get("seconds", 1.0)
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
            raise ValueError("times must be a positive whole number")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 120:
            raise ValueError("seconds must be a number between 0 and 120")
        fault = Fault(mode=mode, **kw)
        with self._lock:
            self._faults.append(fault)
        self._wake.clear()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
        self._wake.set()  # release requests sleeping in "slow"/"timeout"

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [vars(f).copy() for f in self._faults]

    def reset(self) -> None:
        """Forget executions, recorded calls, webhook log and faults."""
        self.clear_faults()
        with self._lock:
            self._executions.clear()
            self._calls.clear()
            self._webhooks.clear()

    def calls(self, path: str | None = None) -> list[dict[str, Any]]:
        """Requests received (``path`` relative to the crew, e.g. "/resume"), oldest first."""
        with self._lock:
            rows = [dict(c) for c in self._calls]
        if path is None:
            return rows
        return [c for c in rows if c["path"] == path or c["path"].startswith(path.rstrip("/") + "/")]

    def webhook_calls(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Webhooks sent (or dropped/refused): kind is human_input, task, step or crew."""
        with self._lock:
            rows = [dict(w) for w in self._webhooks]
        return [w for w in rows if kind is None or w["kind"] == kind]

    def execution(self, execution_id: str) -> SandboxExecution | None:
        with self._lock:
            return self._executions.get(execution_id)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every scheduled task run and webhook has been processed."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # ----------------------------------------------------------------- serving

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Sandbox:
        self._server = BackgroundServer(create_sandbox_app(self), host, port).start()
        self.url = self._server.url
        return self

    def close(self) -> None:
        self.clear_faults()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(5)
            self._worker = None
        self._http.close()

    # ----------------------------------------------------------------- request handling

    def handle(self, crew_name: str, method: str, path: str, raw: bytes, authorization: str | None) -> Answer:
        """One contract request, independent of Flask (the app below adapts it)."""
        call: dict[str, Any] = {
            "method": method, "crew": crew_name, "path": path, "body": _json_or_text(raw),
            "bearer": bool(authorization and authorization.startswith("Bearer ")),
            "auth_ok": False, "at": time.time(),
        }
        with self._lock:
            self._calls.append(call)
        answer = self._answer(crew_name, method, path, raw, authorization, call)
        call["status"] = answer.status
        return answer

    def _answer(self, crew_name: str, method: str, path: str, raw: bytes,
                authorization: str | None, call: dict[str, Any]) -> Answer:
        token = self.crews.get(crew_name)
        if token is None:
            return _error(404, f"No crew is deployed at /{crew_name}.")
        fault = self._take_fault(crew_name, path, ("500", "401", "404", "400", "slow"))
        if fault is not None:
            canned = self._fault_answer(fault)
            if canned is not None:
                return canned
        presented = (authorization or "").removeprefix("Bearer ").strip()
        if not authorization or not authorization.startswith("Bearer ") or not hmac.compare_digest(
            presented.encode(), token.encode()
        ):
            return _error(401, "Invalid or missing bearer token.")
        call["auth_ok"] = True
        answer = self._route(self.specs[crew_name], method, path, raw)
        late = self._take_fault(crew_name, path, ("timeout",))
        if late is not None:
            self._wake.wait(late.seconds)  # applied already; the answer comes too late
        return answer

    def _take_fault(self, crew: str, path: str, modes: tuple[str, ...]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.mode in modes and fault.matches(crew, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _fault_answer(self, fault: Fault) -> Answer | None:
        if fault.mode == "slow":
            self._wake.wait(fault.seconds)
            return None
        status = int(fault.mode)
        messages = {500: "Injected failure.", 401: "Invalid or missing bearer token.",
                    404: "Execution ID not found", 400: "Execution is not in pending human input state"}
        return _error(status, messages[status])

    def _route(self, spec: CrewSpec, method: str, path: str, raw: bytes) -> Answer:
        parts = [p for p in path.split("/") if p]
        if method == "GET" and not parts:
            return Answer(200, "Healthy")
        if method == "GET" and parts == ["inputs"]:
            return Answer(200, {"inputs": list(spec.inputs)})
        if method == "POST" and parts == ["kickoff"]:
            return self._kickoff(spec, raw)
        if method == "POST" and parts == ["resume"]:
            return self._resume(spec, raw)
        if method == "GET" and len(parts) == 2 and "status" in parts:
            return self._status(spec, parts[1] if parts[0] == "status" else parts[0])
        return _error(404, f"No route {method} {path}.")

    # ----------------------------------------------------------------- contract endpoints

    def _kickoff(self, spec: CrewSpec, raw: bytes) -> Answer:
        body = _json_or_text(raw)
        if not isinstance(body, dict):
            return _error(400, "Invalid request body: expected a JSON object.")
        inputs = body.get("inputs")
        if inputs is not None and not isinstance(inputs, dict):
            return _error(422, "inputs must be an object", details={"missing_inputs": list(spec.inputs)})
        inputs = inputs or {}
        missing = [name for name in spec.inputs if inputs.get(name) in (None, "")]
        if missing:
            return _error(422, "Missing required inputs", details={"missing_inputs": missing})
        execution = SandboxExecution(
            id=str(uuid.uuid4()), crew=spec, inputs=dict(inputs), meta=body.get("meta"),
            webhooks=_webhooks_from(body),
        )
        with self._lock:
            self._executions[execution.id] = execution
        self._schedule(lambda: self._run_task(execution.id))
        return Answer(200, {"kickoff_id": execution.id})

    def _status(self, spec: CrewSpec, execution_id: str) -> Answer:
        with self._lock:
            execution = self._executions.get(execution_id)
            if execution is None or execution.crew.name != spec.name:
                return _error(404, "Execution ID not found")
            if spec.status_shape == "documented":
                return Answer(200, _documented_status(execution))
            return Answer(200, _observed_status(execution))

    def _resume(self, spec: CrewSpec, raw: bytes) -> Answer:
        body = _json_or_text(raw)
        problem = _resume_body_problem(body)
        if problem:
            return _error(400, f"Invalid request body: {problem}")
        assert isinstance(body, dict)  # noqa: S101 - checked by _resume_body_problem
        with self._lock:
            execution = self._executions.get(body["execution_id"])
            if execution is None or execution.crew.name != spec.name:
                return _error(404, "Execution ID not found")
            if execution.state != "PENDING_HUMAN_INPUT":
                return _error(400, "Execution is not in pending human input state")
            if body["task_id"] != execution.task.id:
                return _error(404, "Task ID not found")
            execution.webhooks = _webhooks_from(body)  # not carried over from kickoff
            if body["is_approve"]:
                return self._approve(execution, body["human_feedback"])
            execution.feedback.append(body["human_feedback"])
            execution.state = "RUNNING"
        self._schedule(lambda: self._run_task(execution.id))
        return Answer(200, {"status": "retrying", "message": "Task will be retried with your feedback"})

    def _approve(self, execution: SandboxExecution, feedback: str) -> Answer:
        task, output = execution.task, execution.last_output or ""
        execution.outputs.append(output)
        self._schedule(lambda: self._send_task_webhook(execution, task, output))
        execution.task_index += 1
        execution.feedback = []
        if execution.task_index < len(execution.crew.tasks):
            execution.state = "RUNNING"
            self._schedule(lambda: self._run_task(execution.id))
            return Answer(200, {"status": "resumed", "message": "Execution resumed"})
        self._finish(execution)
        return Answer(200, {"status": "completed", "message": "Execution completed"})

    # ----------------------------------------------------------------- the crew at work

    def _run_task(self, execution_id: str) -> None:
        with self._lock:
            execution = self._executions.get(execution_id)
            if execution is None or execution.state != "RUNNING":
                return
            task = execution.task
            output = task.write(execution.inputs, list(execution.feedback))
        self._send_step_webhook(execution, task, output)
        with self._lock:
            if execution.state != "RUNNING" or execution.task is not task:
                return
            if task.human_input:
                execution.state = "PENDING_HUMAN_INPUT"
                execution.last_output = output
                notice = _human_input_notice(execution, task, output)
            else:
                execution.outputs.append(output)
                execution.task_index += 1
                notice = None
        if notice is not None:
            self._send_human_input(execution, notice)
            return
        self._send_task_webhook(execution, task, output)
        with self._lock:
            if execution.task_index < len(execution.crew.tasks):
                self._schedule(lambda: self._run_task(execution.id))
            else:
                self._finish(execution)

    def _finish(self, execution: SandboxExecution) -> None:
        execution.state = "SUCCESS"
        execution.result = "\n\n".join(execution.outputs)
        payload = {
            "kickoff_id": execution.id, "result": execution.result, "result_json": None,
            "token_usage": {"total_tokens": len(execution.result) // 3,
                            "prompt_tokens": len(execution.result) // 5,
                            "completion_tokens": len(execution.result) // 3 - len(execution.result) // 5},
            "meta": execution.meta,
        }
        self._schedule(lambda: self._deliver("crew", execution.webhooks.get("crewWebhookUrl"), payload))

    # ----------------------------------------------------------------- webhooks

    def _send_step_webhook(self, execution: SandboxExecution, task: TaskSpec, output: str) -> None:
        payload = {"prompt": task.description, "thought": f"Working on {task.id}.", "tool": None,
                   "tool_input": None, "result": output[:120], "kickoff_id": execution.id,
                   "meta": execution.meta}
        self._deliver("step", execution.webhooks.get("stepWebhookUrl"), payload)

    def _send_task_webhook(self, execution: SandboxExecution, task: TaskSpec, output: str) -> None:
        payload = {"description": task.description, "name": task.id, "expected_output": task.expected_output,
                   "summary": output.splitlines()[0][:120] if output else "", "agent": task.agent,
                   "output": output, "output_json": None, "kickoff_id": execution.id, "meta": execution.meta}
        self._deliver("task", execution.webhooks.get("taskWebhookUrl"), payload)

    def _send_human_input(self, execution: SandboxExecution, notice: dict[str, Any]) -> None:
        hook = execution.webhooks.get("humanInputWebhook")
        url = hook.get("url") if isinstance(hook, dict) else None
        auth = hook.get("authentication") if isinstance(hook, dict) else None
        self._deliver("human_input", url, notice, auth if isinstance(auth, dict) else None)

    def _deliver(self, kind: str, url: Any, payload: dict[str, Any], auth: dict[str, Any] | None = None) -> None:
        entry: dict[str, Any] = {"kind": kind, "url": url, "payload": payload, "at": time.time()}
        with self._lock:
            self._webhooks.append(entry)
            dropped = any(f.mode == "drop_webhooks" for f in self._faults)
        if not isinstance(url, str) or not url:
            entry["outcome"] = "no-url"
            return
        if dropped:
            entry["outcome"] = "dropped"
            return
        host = urlsplit(url).hostname or ""
        if host not in LOOPBACK_HOSTS:
            entry["outcome"] = "refused: the sandbox only calls loopback addresses"
            return
        headers, basic = _auth_headers(auth)
        try:
            response = self._http.post(url, json=payload, headers=headers, auth=basic,
                                       timeout=(1.0, self.webhook_timeout), allow_redirects=False)
        except requests.RequestException as exc:
            entry["outcome"] = f"error: {type(exc).__name__}"
            return
        entry["outcome"] = str(response.status_code)

    def _schedule(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._pending += 1
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="amp-sandbox-worker", daemon=True)
                self._worker.start()
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                time.sleep(self.step_delay)
                job()
            except Exception:  # noqa: BLE001,S110 - a failing job must not stop the worker
                pass
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


# --------------------------------------------------------------------------- payload shapes


def _json_or_text(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeError):
        return raw[:2000].decode("utf-8", "replace")


def _webhooks_from(body: dict[str, Any]) -> dict[str, Any]:
    hooks = {name: body[name] for name in WEBHOOK_FIELDS if isinstance(body.get(name), str)}
    if isinstance(body.get("humanInputWebhook"), dict):
        hooks["humanInputWebhook"] = body["humanInputWebhook"]
    return hooks


def _resume_body_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "expected a JSON object"
    for name in ("execution_id", "task_id", "human_feedback"):
        if not isinstance(body.get(name), str):
            return f"{name} must be a string"
    if not isinstance(body.get("is_approve"), bool):
        return "is_approve must be a boolean"
    for name in WEBHOOK_FIELDS:
        if name in body and not isinstance(body[name], str):
            return f"{name} must be a URL string"
    return None


def _auth_headers(auth: dict[str, Any] | None) -> tuple[dict[str, str], tuple[str, str] | None]:
    if not auth:
        return {}, None
    if auth.get("strategy") == "bearer" and isinstance(auth.get("token"), str):
        return {"Authorization": f"Bearer {auth['token']}"}, None
    if auth.get("strategy") == "basic":
        return {}, (str(auth.get("username", "")), str(auth.get("password", "")))
    return {}, None


def _human_input_notice(execution: SandboxExecution, task: TaskSpec, output: str) -> dict[str, Any]:
    id_key, task_key, output_key = execution.crew.notice_keys
    return {
        id_key: execution.id, task_key: task.id, output_key: output, "agent": task.agent,
        "description": task.description, "expected_output": task.expected_output,
        "meta": execution.meta, "timestamp": _now_iso(),
    }


def _observed_status(execution: SandboxExecution) -> dict[str, Any]:
    body: dict[str, Any] = {"state": execution.state, "result": execution.result, "last_step": {}}
    if execution.state == "PENDING_HUMAN_INPUT":
        body["last_step"] = {"task_id": execution.task.id, "agent": execution.task.agent,
                             "output": execution.last_output}
    return body


def _documented_status(execution: SandboxExecution) -> dict[str, Any]:
    words = {"RUNNING": "running", "PENDING_HUMAN_INPUT": "pending_human_input",
             "SUCCESS": "completed", "FAILED": "error"}
    return {
        "status": words[execution.state],
        "current_task": execution.task.id,
        "progress": {"completed_tasks": len(execution.outputs), "total_tasks": len(execution.crew.tasks)},
        "result": execution.result,
        "error": None,
    }


# --------------------------------------------------------------------------- the web app


def create_sandbox_app(sandbox: Sandbox | None = None) -> Flask:
    """The sandbox as its own small Flask app (not reviewapp)."""
    sandbox = sandbox or Sandbox()
    app = Flask("reviewapp_amp_sandbox")
    app.extensions["amp_sandbox"] = sandbox
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024

    def contract(crew: str, path: str) -> Response:
        answer = sandbox.handle(crew, request.method, path, request.get_data(cache=False),
                                request.headers.get("Authorization"))
        return answer.response()

    @app.get("/")
    def index() -> Response:
        return jsonify(sandbox="CrewAI AMP sandbox", crews={n: f"/{n}" for n in sandbox.specs})

    @app.route("/<crew>", methods=["GET"])
    @app.route("/<crew>/", methods=["GET"])
    def health(crew: str) -> Response:
        return contract(crew, "/")

    @app.route("/<crew>/<path:rest>", methods=["GET", "POST"])
    def endpoint(crew: str, rest: str) -> Response:
        return contract(crew, "/" + rest)

    def loopback_only() -> None:
        if request.remote_addr not in LOOPBACK_HOSTS:
            abort(403)

    @app.get("/_sandbox/calls")
    def control_calls() -> Response:
        loopback_only()
        return jsonify(calls=sandbox.calls(request.args.get("path")))

    @app.get("/_sandbox/webhooks")
    def control_webhooks() -> Response:
        loopback_only()
        return jsonify(webhooks=sandbox.webhook_calls(request.args.get("kind")))

    @app.route("/_sandbox/faults", methods=["GET", "POST", "DELETE"])
    def control_faults() -> Any:
        loopback_only()
        if request.method == "DELETE":
            sandbox.clear_faults()
        elif request.method == "POST":
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or "mode" not in body:
                return jsonify(error="Bad Request", message='send {"mode": ..., "path"?, "times"?, "seconds"?}'), 400
            try:
                sandbox.set_fault(str(body.pop("mode")), **body)
            except (TypeError, ValueError) as exc:
                return jsonify(error="Bad Request", message=str(exc)), 400
        return jsonify(faults=sandbox.faults())

    @app.post("/_sandbox/reset")
    def control_reset() -> Response:
        loopback_only()
        sandbox.reset()
        return jsonify(status="reset")

    return app
