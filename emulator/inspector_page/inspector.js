// The inspector page: reads the emulator's inspector JSON and renders it as text.
// Every value from the emulator (task bodies and headers come from whoever created
// the task) is set with textContent / text nodes, never parsed as HTML.
"use strict";

(() => {
  const API = "/emulator/v1/inspector";
  const REFRESH_MS = 2000;
  const STATES = new Set(["RUNNING", "PAUSED", "DISABLED"]);
  let session = { actions: false, token: null };
  let selectedQueue = null;
  let selectedTask = null;
  let busy = false;
  let again = false; // a refresh was asked for while one ran: run once more after it

  const $ = (id) => document.getElementById(id);

  // An element with text children only: strings become text nodes (Node.append).
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "onclick") node.addEventListener("click", value);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child === null || child === undefined ? "" : child);
    return node;
  }

  const num = (value) => el("td", { class: "num" }, String(value));
  const time = (iso) => (iso ? iso.replace("T", " ").replace("Z", "") : "\u2014");
  const path = (name) => `${API}/${encodeURI(name)}`;
  const shortId = (name) => name.slice(name.lastIndexOf("/") + 1);

  function status(last, inFlight) {
    if (inFlight) return "in flight";
    if (!last) return "\u2014";
    return last.message ? `${last.code}: ${last.message}` : last.code;
  }

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function errorOf(response) {
    let message = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message += `: ${body.error.message}`;
    } catch (_) {
      // not JSON: the status says enough
    }
    return new HttpError(response.status, message);
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }

  function showError(message) {
    $("error").hidden = !message;
    $("error").textContent = message || "";
  }

  // -- location: #queue=NAME&task=NAME, so a reload keeps the selection -------------
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    selectedQueue = params.get("queue");
    selectedTask = selectedQueue ? params.get("task") : null;
  }

  function writeHash() {
    const params = new URLSearchParams();
    if (selectedQueue) params.set("queue", selectedQueue);
    if (selectedTask) params.set("task", selectedTask);
    history.replaceState(null, "", params.toString() ? `#${params}` : location.pathname);
  }

  function select(queue, task) {
    selectedQueue = queue;
    selectedTask = task;
    writeHash();
    refresh();
  }

  // -- actions ------------------------------------------------------------------------
  async function act(name, action, question) {
    if (question && !window.confirm(question)) return;
    const response = await fetch(`${path(name)}:${action}`, {
      method: "POST",
      headers: { "X-Inspector-Token": session.token || "" },
    });
    if (!response.ok) {
      showError(`${action} failed: ${(await errorOf(response)).message}`);
      return;
    }
    await refresh();
  }

  function button(label, onclick, title) {
    return el("button", { type: "button", title: title || label, onclick }, label);
  }

  // -- queues -------------------------------------------------------------------------
  function queueActions(q) {
    if (!session.actions) return el("span", { class: "muted" }, "read-only");
    const toggle =
      q.state === "PAUSED"
        ? button("Resume", () => act(q.name, "resume"), `Resume ${q.id}`)
        : button("Pause", () => act(q.name, "pause"), `Pause ${q.id}`);
    const purge = button(
      "Purge",
      () => act(q.name, "purge", `Delete all ${q.depth} tasks of ${q.id}?`),
      `Purge ${q.id}`,
    );
    return el("span", { class: "actions" }, toggle, purge);
  }

  function renderQueues(queues) {
    const rows = queues.map((q) => {
      const attempts = Object.values(q.attempts).reduce((a, b) => a + b, 0);
      const state = STATES.has(q.state) ? q.state.toLowerCase() : "other";
      return el(
        "tr",
        { class: q.name === selectedQueue ? "selected" : "", "data-queue": q.name },
        el("td", {}, el("button", { type: "button", class: "link", onclick: () => select(q.name, null) }, q.id)),
        el("td", { class: "muted nowrap" }, `${q.project} / ${q.location}`),
        el("td", {}, el("span", { class: `state state-${state}` }, q.state)),
        num(q.max_dispatches_per_second),
        num(q.max_concurrent_dispatches),
        num(q.depth),
        num(q.in_flight),
        num(attempts),
        num(q.failures),
        num(q.dropped),
        el("td", {}, queueActions(q)),
      );
    });
    $("queue-table").tBodies[0].replaceChildren(...rows);
    $("queues-empty").hidden = queues.length > 0;
  }

  // -- tasks of the selected queue ------------------------------------------------------
  function renderTasks(data) {
    $("tasks-title").textContent = `Tasks of ${shortId(data.queue)} (${data.state})`;
    $("tasks-note").textContent =
      data.total === 0
        ? "No tasks in this queue."
        : data.total > data.tasks.length
          ? `${data.total} tasks; the ${data.tasks.length} scheduled earliest are listed.`
          : `${data.total} task${data.total === 1 ? "" : "s"}.`;
    const rows = data.tasks.map((t) =>
      el(
        "tr",
        { class: t.name === selectedTask ? "selected" : "", "data-task": t.name },
        el("td", {}, el("button", { type: "button", class: "link", onclick: () => select(selectedQueue, t.name) }, t.id)),
        el("td", { class: "mono" }, t.request),
        el("td", { class: "nowrap" }, time(t.schedule_time)),
        num(t.dispatch_count),
        num(t.response_count),
        el("td", {}, status(t.last_status, t.in_flight)),
      ),
    );
    $("task-table").tBodies[0].replaceChildren(...rows);
  }

  // -- one task -----------------------------------------------------------------------
  function field(label, value) {
    return [el("dt", {}, label), el("dd", {}, value)];
  }

  function targetFields(target) {
    if (target.kind === "app_engine") {
      const r = target.routing;
      const routing = [r.service && `service ${r.service}`, r.version && `version ${r.version}`, r.instance && `instance ${r.instance}`]
        .filter(Boolean)
        .join(", ");
      return [
        ...field("Request", el("span", { class: "mono" }, `${target.method} ${target.relative_uri}`)),
        ...field("App Engine routing", `${routing || "default service"}${r.host ? ` (host ${r.host})` : ""}`),
      ];
    }
    const fields = [...field("Request", el("span", { class: "mono" }, `${target.method} ${target.url}`))];
    if (target.effective_url !== target.url) {
      fields.push(...field("Delivered to", el("span", { class: "mono" }, target.effective_url)));
    }
    const oidc = target.oidc_token;
    fields.push(
      ...field(
        "OIDC token",
        oidc ? `${oidc.service_account_email}, audience ${oidc.audience || "(the URL)"}` : "none",
      ),
    );
    return fields;
  }

  function renderTask(t) {
    $("task-title").textContent = `Task ${t.id}`;
    const last = t.last_attempt;
    $("task-fields").replaceChildren(
      ...field("Name", el("span", { class: "mono" }, t.name)),
      ...targetFields(t.target),
      ...field("Scheduled", time(t.schedule_time)),
      ...field("Created", time(t.create_time)),
      ...field("Dispatch deadline", t.dispatch_deadline),
      ...field("Dispatches / responses", `${t.dispatch_count} / ${t.response_count}`),
      ...field("First attempt", t.first_attempt ? time(t.first_attempt.dispatch_time) : "none yet"),
      ...field(
        "Last attempt",
        last
          ? `dispatched ${time(last.dispatch_time)}, answered ${time(last.response_time)}, ${status(last.status, t.in_flight)}`
          : "none yet",
      ),
    );
    const body = t.target.body;
    $("body-kind").textContent = `(${body.kind}, ${body.size} bytes)`;
    $("body-note").textContent = body.note;
    $("body-note").hidden = !body.note;
    $("task-body").textContent = body.text;
    $("task-headers").tBodies[0].replaceChildren(
      ...t.target.headers.map(([name, value]) => el("tr", {}, el("td", { class: "mono" }, name), el("td", { class: "mono" }, value))),
    );
    $("attempts-note").textContent = t.history.length
      ? `The latest ${t.history.length} failed attempts (kept in memory, at most 20).`
      : "No failed attempt recorded.";
    $("task-attempts").tBodies[0].replaceChildren(
      ...t.history.map((a) =>
        el("tr", {}, el("td", { class: "nowrap" }, time(a.dispatch_time)), el("td", { class: "nowrap" }, time(a.response_time)),
          num(a.http_status === null ? "\u2014" : a.http_status), el("td", {}, a.code), el("td", {}, a.message)),
      ),
    );
    $("task-actions").replaceChildren(
      session.actions ? button("Run now", () => act(t.name, "run"), `Run ${t.id} now`) : "",
    );
  }

  // -- refresh ------------------------------------------------------------------------
  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      // Read everything first, then render at once: no half-drawn page between fetches.
      const listing = await getJSON(`${API}/queues`);
      const queues = listing.queues;
      let tasks = null;
      let task = null;
      let gone = null;
      if (selectedQueue) {
        try {
          tasks = await getJSON(`${path(selectedQueue)}/tasks`);
        } catch (e) {
          if (!(e instanceof HttpError && e.status === 404)) throw e;
          selectedQueue = selectedTask = null; // the queue was deleted
        }
      }
      if (selectedTask) {
        try {
          task = await getJSON(path(selectedTask));
        } catch (e) {
          if (!(e instanceof HttpError && e.status === 404)) throw e;
          gone = `Task ${shortId(selectedTask)} is gone: it completed, was deleted or was dropped.`;
          selectedTask = null;
        }
      }
      renderQueues(queues);
      $("tasks").hidden = !tasks;
      if (tasks) renderTasks(tasks);
      $("task").hidden = !task;
      if (task) renderTask(task);
      writeHash();
      showError(gone);
      // The emulator's time (UTC, as in the tables), which a manual clock moves.
      const clock = listing.clock;
      $("updated").textContent =
        `emulator time ${time(clock.now)} UTC${clock.manual ? " (manual clock)" : ""}`;
    } catch (e) {
      showError(`Cannot read the emulator: ${e.message}`);
    } finally {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  async function start() {
    readHash();
    try {
      session = await getJSON(`${API}/session`);
    } catch (e) {
      showError(`Cannot read the emulator: ${e.message}`);
    }
    $("mode").textContent = session.actions ? "actions enabled" : "read-only";
    $("mode").title = session.actions ? "" : "start the emulator with --inspector-actions to pause, resume, purge or run";
    await refresh();
    setInterval(refresh, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
