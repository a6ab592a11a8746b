/* reviewapp review page and decision outcome page (vendored, no dependencies).
 *
 * - keeps the claim alive while the page is open and in use (POST + X-CSRFToken),
 * - keeps the "exactly what will be sent" preview in step with the Feedback box,
 * - keyboard shortcuts (listed on the page),
 * - on the outcome page, polls the JSON status until delivery reaches a final state.
 * Everything that comes from the server is written with textContent, never innerHTML.
 */
(function () {
  "use strict";

  var IDLE_LIMIT_MS = 30 * 60 * 1000;      // stop extending a claim after 30 min without input
  var POLL_LIMIT_MS = 30 * 60 * 1000;      // stop polling an outcome after 30 min

  function postJson(url, csrf) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, "Accept": "application/json" }
    }).then(function (response) { return response.json(); });
  }

  function say(element, text, cls) {
    if (!element) { return; }
    var p = document.createElement("p");
    p.className = cls || "notice";
    p.textContent = text;
    element.replaceChildren(p);
  }

  /* ------------------------------------------------------------ claim heartbeat */
  function startHeartbeat(page) {
    if (page.dataset.held !== "1") { return; }
    var url = page.dataset.heartbeatUrl;
    var csrf = page.dataset.csrf;
    var every = Math.max(1, parseInt(page.dataset.heartbeatSeconds, 10) || 60) * 1000;
    var lastInput = Date.now();
    ["keydown", "mousemove", "mousedown", "scroll", "touchstart"].forEach(function (name) {
      window.addEventListener(name, function () { lastInput = Date.now(); }, { passive: true });
    });
    var timer = window.setInterval(function () {
      if (Date.now() - lastInput > IDLE_LIMIT_MS) {
        window.clearInterval(timer);
        say(document.getElementById("claim-status"),
            "You have been away for a while, so this page stopped holding the round. Reload to claim it again.");
        return;
      }
      postJson(url, csrf).then(function (claim) {
        if (claim.held) {
          var expires = document.getElementById("claim-expires");
          if (expires && claim.expires_at) {
            expires.textContent = claim.expires_at.substring(11, 16) + " UTC";
          }
          return;
        }
        window.clearInterval(timer);
        var text = claim.state !== "pending"
          ? "This round is no longer waiting for a decision (" + claim.state + "). Reload to see why."
          : (claim.holder ? claim.holder + " is reviewing this round now; you can no longer submit."
                          : "Your claim on this round ended. Reload to claim it again.");
        say(document.getElementById("claim-status"), text);
      }).catch(function () { /* a missed beat is fine: the next one retries */ });
    }, every);
  }

  /* ------------------------------------------------------------ preview */
  function startPreview() {
    var feedback = document.getElementById("feedback");
    var previews = [document.getElementById("preview-approve"), document.getElementById("preview-revise")];
    if (!feedback) { return; }
    function render() {
      var text = feedback.value.replace(/\r\n?/g, "\n").trim();
      previews.forEach(function (pre) {
        if (!pre) { return; }
        var body = JSON.parse(pre.dataset.body);
        body.human_feedback = text;
        pre.textContent = JSON.stringify(body, null, 2);
      });
    }
    feedback.addEventListener("input", render);
    render();
  }

  /* ------------------------------------------------------------ one submit only */
  function guardDoubleSubmit(form) {
    if (!form) { return; }
    form.addEventListener("submit", function (event) {
      if (form.dataset.sent === "1") { event.preventDefault(); return; }
      form.dataset.sent = "1";
      window.setTimeout(function () {
        form.querySelectorAll("input[type=submit], button[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
  }

  /* ------------------------------------------------------------ keyboard */
  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "TEXTAREA" || tag === "INPUT" || tag === "SELECT" || (target && target.isContentEditable);
  }

  function startShortcuts() {
    var feedback = document.getElementById("feedback");
    var approve = document.getElementById("approve-button");
    var revise = document.getElementById("revise-button");
    var next = document.getElementById("review-next-form");
    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey) { return; }
      if (event.key === "Escape" && typing(event.target)) { event.target.blur(); return; }
      if (typing(event.target)) { return; }
      if (event.key === "f" && feedback) {
        event.preventDefault();
        feedback.focus();
      } else if (event.key === "a" && approve && !approve.disabled) {
        event.preventDefault();
        approve.click();
      } else if (event.key === "r" && revise && !revise.disabled) {
        event.preventDefault();
        if (feedback && !feedback.value.trim()) {
          feedback.focus();
          return;
        }
        if (window.confirm("Request a revision with this feedback?")) { revise.click(); }
      } else if (event.key === "n" && next) {
        event.preventDefault();
        next.requestSubmit ? next.requestSubmit() : next.submit();
      }
    });
  }

  /* ------------------------------------------------------------ delivery outcome */
  function startOutcomePolling(box) {
    if (!box || box.dataset.final === "1" || !box.dataset.statusUrl) { return; }
    var started = Date.now();
    var delay = 1500;
    function tick() {
      fetch(box.dataset.statusUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) { return response.json(); })
        .then(function (status) {
          if (status.headline) {
            box.querySelector("[data-part=headline]").textContent = status.headline;
            box.querySelector("[data-part=detail]").textContent = status.detail;
            box.className = "job-summary job-" + status.tone;
          }
          if (!status.final) { schedule(); } else { box.dataset.final = "1"; }
        })
        .catch(schedule);
    }
    function schedule() {
      if (Date.now() - started > POLL_LIMIT_MS) { return; }
      delay = Math.min(delay * 1.5, 10000);
      window.setTimeout(tick, delay);
    }
    window.setTimeout(tick, delay);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.getElementById("review-page");
    if (page) {
      startHeartbeat(page);
      startPreview();
      startShortcuts();
      guardDoubleSubmit(document.getElementById("decision-form"));
    }
    startOutcomePolling(document.getElementById("job-status"));
    if (!page && document.getElementById("job-status")) { startShortcuts(); }
  });
}());
