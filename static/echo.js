/* Echo console: connect to /echo, send text or random binary, show each round trip. */
"use strict";

(function () {
  const { el, wsUrl, clock, formatBytes, formatMs } = window.wsapp;
  const $ = (id) => document.getElementById(id);
  const statusEl = $("status");
  const logEl = $("log");
  const closeInfo = $("close-info");
  const statsEl = $("stats");
  const connectBtn = $("connect");
  const disconnectBtn = $("disconnect");
  const textInput = $("text");
  const sizeInput = $("size");
  const sendTextBtn = $("send-text");
  const sendBinaryBtn = $("send-binary");
  const MAX_LOG = 500;
  const MAX_SIZE = 1048576;
  const PREVIEW = 200;

  const url = wsUrl($("endpoint").dataset.path);
  $("endpoint").textContent = url;

  let ws = null;
  let inFlight = []; // FIFO of what we sent: the echo comes back in order
  let seq = 0;
  const rtts = [];

  function setStatus(state, label) {
    statusEl.dataset.state = state;
    statusEl.textContent = label;
    const open = state === "open";
    connectBtn.disabled = state === "open" || state === "connecting" || state === "closing";
    disconnectBtn.disabled = !(state === "open" || state === "connecting");
    for (const c of [textInput, sizeInput, sendTextBtn, sendBinaryBtn]) c.disabled = !open;
  }

  function log(dir, kind, summary, detail) {
    const li = el("li", "entry " + dir);
    li.dataset.dir = dir;
    li.dataset.kind = kind;
    li.append(el("time", "at", clock(Date.now())));
    const arrow = dir === "out" ? "→" : dir === "in" ? "←" : "•";
    li.append(el("span", "arrow", arrow));
    li.append(el("span", "summary", summary));
    if (detail) li.append(el("span", "detail", detail));
    logEl.append(li);
    while (logEl.children.length > MAX_LOG) logEl.firstElementChild.remove();
    logEl.scrollTop = logEl.scrollHeight;
    return li;
  }

  function updateStats() {
    if (!rtts.length) {
      statsEl.textContent = "no round trips yet";
      return;
    }
    const sum = rtts.reduce((a, b) => a + b, 0);
    statsEl.textContent =
      rtts.length + " round trips · last " + formatMs(rtts[rtts.length - 1]) +
      " · min " + formatMs(Math.min(...rtts)) + " · avg " + formatMs(sum / rtts.length) +
      " · max " + formatMs(Math.max(...rtts));
  }

  function preview(text) {
    return text.length > PREVIEW ? text.slice(0, PREVIEW) + "…" : text;
  }

  function sameBytes(a, b) {
    if (a.byteLength !== b.byteLength) return false;
    const x = new Uint8Array(a);
    const y = new Uint8Array(b);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }

  function connect() {
    if (ws) return;
    closeInfo.hidden = true;
    setStatus("connecting", "Connecting…");
    log("sys", "event", "connecting to " + url);
    const sock = new WebSocket(url);
    sock.binaryType = "arraybuffer";
    ws = sock;
    inFlight = [];

    sock.addEventListener("open", () => {
      if (ws !== sock) return;
      setStatus("open", "Connected");
      log("sys", "event", "connected");
      textInput.focus();
    });

    sock.addEventListener("message", (event) => {
      if (ws !== sock) return;
      const now = performance.now();
      const sent = inFlight.shift();
      const isText = typeof event.data === "string";
      const size = isText ? new TextEncoder().encode(event.data).length : event.data.byteLength;
      let detail = "";
      let li;
      if (isText) {
        li = log("in", "text", preview(event.data));
      } else {
        li = log("in", "binary", "binary " + formatBytes(size));
      }
      if (sent) {
        const rtt = now - sent.at;
        rtts.push(rtt);
        const ok = isText ? sent.data === event.data : sent.data instanceof ArrayBuffer && sameBytes(sent.data, event.data);
        detail = (isText ? formatBytes(size) + " · " : "") + "round trip " + formatMs(rtt) + (ok ? "" : " · differs from #" + sent.n);
        li.dataset.rttMs = rtt.toFixed(3);
        li.dataset.match = ok ? "yes" : "no";
        const rttEl = el("span", "detail rtt", detail);
        li.append(rttEl);
        updateStats();
      } else {
        li.append(el("span", "detail", "unsolicited"));
      }
    });

    sock.addEventListener("error", () => {
      if (ws !== sock) return;
      log("sys", "event", "socket error (details are not exposed to pages)");
    });

    sock.addEventListener("close", (event) => {
      if (ws !== sock) return;
      ws = null;
      const lost = inFlight.length;
      inFlight = [];
      const reason = event.reason ? " “" + event.reason + "”" : "";
      const text = "Closed with code " + event.code + reason + (event.wasClean ? "" : " (not clean)") +
        (lost ? " · " + lost + " message(s) never came back" : "");
      closeInfo.textContent = text;
      closeInfo.dataset.code = String(event.code);
      closeInfo.hidden = false;
      log("sys", "close", text);
      setStatus("closed", "Disconnected");
    });
  }

  function disconnect() {
    if (!ws) return;
    setStatus("closing", "Closing…");
    ws.close(1000, "bye from the echo console");
  }

  function send(data, kind, summary) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const n = ++seq;
    inFlight.push({ n, data, at: performance.now() });
    ws.send(data);
    log("out", kind, summary);
  }

  $("text-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = textInput.value;
    if (!text) return;
    send(text, "text", preview(text));
    textInput.select();
  });

  $("binary-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const size = Math.max(1, Math.min(MAX_SIZE, Math.floor(Number(sizeInput.value) || 0)));
    sizeInput.value = String(size);
    const bytes = new Uint8Array(size);
    for (let off = 0; off < size; off += 65536) {
      crypto.getRandomValues(bytes.subarray(off, Math.min(size, off + 65536)));
    }
    send(bytes.buffer, "binary", "binary " + formatBytes(size) + " of random bytes");
  });

  connectBtn.addEventListener("click", connect);
  disconnectBtn.addEventListener("click", disconnect);
  $("clear").addEventListener("click", () => {
    logEl.replaceChildren();
    rtts.length = 0;
    updateStats();
  });

  setStatus("closed", "Disconnected");
  connect();
})();
