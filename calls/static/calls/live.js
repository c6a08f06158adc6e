// The admin's live view (docs/operations.md, "Live view"): rows from the page's JSON, then
// kept current over the websocket. Plain script, no build step.
(function () {
  "use strict";
  const table = document.getElementById("live-calls");
  const body = table.tBodies[0];
  const status = document.getElementById("live-status");
  const empty = document.getElementById("live-empty");
  const read = (id) => JSON.parse(document.getElementById(id).textContent);
  const terminal = new Set(read("live-terminal-states"));
  // An ended call stays on screen this long, greyed, so its last state can be read.
  const ENDED_KEEP_MS = 30000;
  let retryMs = 1000;

  function cell(row, name) {
    return row.querySelector("." + name);
  }

  function rowFor(call) {
    let row = body.querySelector('tr[data-call-id="' + call.callId + '"]');
    if (row) return row;
    if (call.ended) return null; // never seen live: nothing to show
    row = document.createElement("tr");
    row.dataset.callId = call.callId;
    for (const name of ["id", "state", "direction", "from", "to", "duration", "latency", "line"]) {
      const td = document.createElement("td");
      td.className = name;
      row.appendChild(td);
    }
    const link = document.createElement("a");
    link.textContent = call.callId.slice(0, 8);
    cell(row, "id").appendChild(link);
    row.addEventListener("click", () => { window.location.href = row.dataset.url; });
    body.prepend(row);
    return row;
  }

  function show(call) {
    const row = rowFor(call);
    if (!row) return;
    row.dataset.url = call.url;
    row.dataset.answeredAt = call.answeredAt || "";
    row.dataset.endedAt = call.endedAt || "";
    row.querySelector("a").href = call.url;
    cell(row, "state").textContent = call.state;
    cell(row, "direction").textContent = call.direction;
    cell(row, "from").textContent = call.from;
    cell(row, "to").textContent = call.to;
    cell(row, "latency").textContent = call.latencyMs === null ? "—" : call.latencyMs + " ms";
    const line = call.lastLine;
    cell(row, "line").textContent = line
      ? (line.speaker === "bot" ? "bot: " : "caller: ") + line.text + (line.interrupted ? " (cut off)" : "")
      : "";
    if (terminal.has(call.state) && !row.classList.contains("ended")) {
      row.classList.add("ended");
      setTimeout(() => { row.remove(); tick(); }, ENDED_KEEP_MS);
    }
    tick();
  }

  function duration(row) {
    if (!row.dataset.answeredAt) return "—";
    const end = row.dataset.endedAt ? Date.parse(row.dataset.endedAt) : Date.now();
    const seconds = Math.max(0, Math.floor((end - Date.parse(row.dataset.answeredAt)) / 1000));
    const mm = String(Math.floor(seconds / 60)).padStart(2, "0");
    return mm + ":" + String(seconds % 60).padStart(2, "0");
  }

  function tick() {
    for (const row of body.rows) cell(row, "duration").textContent = duration(row);
    empty.hidden = body.rows.length > 0;
  }

  function replaceAll(calls) {
    body.replaceChildren();
    calls.forEach(show);
    tick();
  }

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + table.dataset.socket);
    socket.onopen = () => { retryMs = 1000; setStatus("live", "Live"); };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "snapshot") replaceAll(data.calls.slice().reverse());
      else if (data.type === "call") show(data.call);
    };
    socket.onclose = () => {
      // Refused (signed out) or the server went away: try again, less and less often.
      setStatus("down", "Disconnected — reconnecting…");
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    };
  }

  replaceAll(read("live-calls-data").slice().reverse());
  setInterval(tick, 1000);
  connect();
})();
