/* Chat room page: speaks the /chat/<room> protocol (docs/protocol.md, issue 3).
 *
 * Delivery guarantees on the page
 * - Every message id is rendered at most once. Ids are opaque strings to us; we remember
 *   each id with its name, text and ts, and drop a message whose id we have already shown.
 * - After a dropped connection we reconnect with exponential backoff (0.5 s doubling to
 *   10 s, with jitter) and resume with `since=<id of the last message received>`, so the
 *   server replays exactly what we missed.
 * - Server incarnations: a server with the memory broker forgets its history when it
 *   restarts. Today's ids look like "<ms>-<seq>" and keep increasing across restarts, so our
 *   `since` from the old incarnation still means "everything after this" to the new one,
 *   which replays what it has (`hello.recovered` is false when it no longer has everything:
 *   we say so in a notice). Ids stay opaque to us all the same, so in case a broker ever
 *   hands out an old id again, an id is a duplicate only if it comes back with the same
 *   name, text and ts; the same id with a different message means a new incarnation: we keep
 *   what is on screen, forget the old ids and render the new message. A change of
 *   `hello.epoch`, should the server ever send one, has the same effect.
 *   Tested in tests/pages/test_chat_page.py::test_server_restart_resumes_without_loss.
 * - Our own messages show at once as "sending", are confirmed by the server's `message`
 *   (same name and text) or `ack` (same ref), whichever comes first; each id still renders
 *   once. Messages typed while offline wait in an outbox and go out after `hello`.
 *   A message sent just before a drop and never confirmed, even by the resume replay, is
 *   marked "not delivered" with a button to send it again (we never resend it on our own,
 *   which could duplicate it).
 * - Peer text is always set with textContent, never parsed as HTML.
 *
 * Limits and typing
 * - `hello.max_text_bytes` is the server's limit (WSAPP_MAX_CHAT_BYTES): a longer message
 *   is refused here before it is sent, with a notice that says the limit, and stays in the
 *   composer. A message of white space only is not sent (the server refuses it too).
 * - While you type we send the named event {"type": "event", "event": "typing", "data":
 *   {"typing": true}} at most every TYPING_EVERY_MS, and {"typing": false} once the text is
 *   sent or cleared. Others' typing events (they carry a `sender`; server events do not)
 *   show "x is typing…" until false, a message from x, x leaving, or TYPING_TTL_MS of
 *   silence. The server keeps no events (docs/protocol.md, "Events").
 * - The Rooms list shows this room's member count from the Members list (live), the other
 *   rooms' from GET /api/rooms (every 15 s).
 */
"use strict";

(function () {
  const { el, wsUrl, clock, formatBytes, fetchRooms, renderRooms, wireRoomForm } = window.wsapp;
  const $ = (id) => document.getElementById(id);

  const root = $("chat");
  const room = root.dataset.room;
  const statusEl = $("status");
  const nickForm = $("nick-form");
  const nickInput = $("nick");
  const body = $("chat-body");
  const list = $("messages");
  const composer = $("composer");
  const textArea = $("text");
  const membersEl = $("members");
  const memberCount = $("member-count");
  const roomsEl = $("rooms");
  const meName = $("me-name");
  const notice = $("notice");
  const noticeText = $("notice-text");
  const typingEl = $("typing");

  const NICK_KEY = "wsapp.nick";
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const CONFIRM_GRACE_MS = 5000;
  const MAX_RENDERED = 1000;
  const MAX_SEEN = 5000;
  const TYPING_EVERY_MS = 2000;
  const TYPING_TTL_MS = 5000;

  let nick = null; // what we ask for
  let myName = null; // what the server calls us (hello.name)
  let ws = null;
  let gen = 0; // connection generation, +1 per socket
  let connId = null;
  let helloSeen = false;
  let everConnected = false;
  let userClosed = false;
  let attempt = 0;
  let retryTimer = null;
  let retryAt = 0;
  let countdownTimer = null;
  let lastId = null;
  let epoch = null;
  const seen = new Map(); // id -> {name, text, ts}
  const members = new Map(); // connection id (or a made-up key) -> name
  const pending = []; // our messages not yet confirmed: {ref, text, li, state, gen}
  let refSeq = 0;
  let maxTextBytes = null; // hello.max_text_bytes: the server's limit, once known
  let apiRooms = null; // the last GET /api/rooms answer
  const typers = new Map(); // connection id -> {name, timer}: who is typing
  let typingOn = false; // we told the room we are typing
  let typingSentAt = 0;
  const encoder = new TextEncoder();

  // ---------------------------------------------------------------- status and notices
  function setStatus(state, label) {
    statusEl.dataset.state = state;
    statusEl.textContent = label;
    root.dataset.state = state;
  }

  function showNotice(text, kind) {
    noticeText.textContent = text;
    notice.dataset.kind = kind || "info";
    notice.hidden = false;
  }

  function hideNotice(kind) {
    if (!kind || notice.dataset.kind === kind) notice.hidden = true;
  }

  $("notice-close").addEventListener("click", () => {
    notice.hidden = true;
    textArea.focus();
  });

  // ---------------------------------------------------------------- rendering
  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function append(li) {
    const stick = nearBottom();
    list.append(li);
    while (list.children.length > MAX_RENDERED) list.firstElementChild.remove();
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function systemLine(text, kind) {
    const li = el("li", "sys" + (kind ? " " + kind : ""));
    li.append(el("span", "text", text));
    li.append(el("time", "at", clock(Date.now())));
    append(li);
  }

  function hue(name) {
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  function fillMessage(li, msg) {
    li.replaceChildren();
    li.className = "msg" + (msg.name === myName ? " mine" : "") + (msg.replay ? " replay" : "");
    li.dataset.id = msg.id;
    const head = el("div", "head");
    const who = el("span", "name", msg.name);
    who.style.setProperty("--hue", String(hue(msg.name || "")));
    head.append(who);
    const ts = typeof msg.ts === "number" ? msg.ts : Date.now();
    const time = el("time", "at", clock(ts));
    time.dateTime = new Date(ts).toISOString();
    time.title = new Date(ts).toLocaleString();
    head.append(time);
    li.append(head);
    li.append(el("p", "text", msg.text)); // textContent: never HTML
  }

  function renderNew(msg) {
    const li = el("li");
    fillMessage(li, msg);
    append(li);
  }

  function remember(id, info) {
    seen.set(id, info);
    if (seen.size > MAX_SEEN) seen.delete(seen.keys().next().value);
  }

  // ---------------------------------------------------------------- members
  function renderMembers() {
    membersEl.replaceChildren();
    const counts = new Map();
    for (const name of members.values()) counts.set(name, (counts.get(name) || 0) + 1);
    const names = Array.from(counts.keys()).sort((a, b) => a.localeCompare(b));
    for (const name of names) {
      const n = counts.get(name);
      const li = el("li", name === myName ? "me" : null);
      const label = el("span", "name", name);
      label.style.setProperty("--hue", String(hue(name)));
      li.append(label);
      if (n > 1) li.append(el("span", "times", "×" + n));
      if (name === myName) li.append(el("span", "you", "(you)"));
      membersEl.append(li);
    }
    memberCount.textContent = String(members.size);
    renderRoomList();
  }

  /** The Rooms list, this room's count taken from the Members list so the two agree. */
  function renderRoomList() {
    let list = apiRooms;
    if (helloSeen) {
      list = (apiRooms || []).filter((r) => r.room !== room).concat([{ room, members: members.size }]);
    }
    renderRooms(roomsEl, list, room);
  }

  let anon = 0;
  function addMember(id, name) {
    members.set(id !== undefined && id !== null ? "id:" + id : "anon:" + ++anon, name);
  }

  function removeMember(id, name) {
    if (members.delete("id:" + id)) return;
    for (const [key, value] of members) {
      if (value === name) {
        members.delete(key);
        return;
      }
    }
  }

  // ---------------------------------------------------------------- our own messages
  function newRef() {
    refSeq += 1;
    return "p" + Date.now().toString(36) + "-" + refSeq;
  }

  function setPendingState(p, state, detail) {
    p.state = state;
    p.li.dataset.state = state;
    p.stateEl.textContent = detail;
    p.retryBtn.hidden = state !== "failed";
  }

  function dropPending(p) {
    const i = pending.indexOf(p);
    if (i >= 0) pending.splice(i, 1);
  }

  function createPending(text) {
    const li = el("li", "msg mine pending");
    const head = el("div", "head");
    const who = el("span", "name", myName || nick);
    who.style.setProperty("--hue", String(hue(myName || nick)));
    head.append(who);
    const stateEl = el("span", "state", "");
    head.append(stateEl);
    li.append(head);
    li.append(el("p", "text", text));
    const retryBtn = el("button", "quiet retry", "Send again");
    retryBtn.type = "button";
    retryBtn.hidden = true;
    li.append(retryBtn);
    const p = { ref: newRef(), text, li, stateEl, retryBtn, state: "queued", gen: 0 };
    retryBtn.addEventListener("click", () => {
      dropPending(p);
      li.remove();
      submitText(p.text);
    });
    pending.push(p);
    append(li);
    return p;
  }

  function utf8Bytes(text) {
    return encoder.encode(text).length;
  }

  function overLimit(text) {
    return maxTextBytes !== null && utf8Bytes(text) > maxTextBytes;
  }

  function limitSentence(text) {
    return "it is " + formatBytes(utf8Bytes(text)) + " (" + utf8Bytes(text) + " bytes) and the server takes at most " +
      maxTextBytes + " bytes";
  }

  function transmit(p) {
    if (overLimit(p.text)) { // typed while offline, before we knew the limit
      setPendingState(p, "failed", "not sent: " + limitSentence(p.text));
      p.retryBtn.hidden = true;
      return;
    }
    p.gen = gen;
    ws.send(JSON.stringify({ type: "message", text: p.text, ref: p.ref }));
    setPendingState(p, "sent", "sending…");
  }

  function submitText(text) {
    const p = createPending(text);
    if (ws && helloSeen && ws.readyState === WebSocket.OPEN) transmit(p);
    else setPendingState(p, "queued", "waiting for the connection…");
  }

  /** Turn a pending placeholder into the confirmed message (moved to its place in order). */
  function confirmPending(p, msg) {
    dropPending(p);
    p.li.classList.remove("pending");
    delete p.li.dataset.state;
    fillMessage(p.li, msg);
    p.li.remove();
    append(p.li);
  }

  // ---------------------------------------------------------------- typing (named events)
  function sendTyping(on) {
    if (!ws || !helloSeen || ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: "event", event: "typing", data: { typing: on } }));
    typingOn = on;
    typingSentAt = on ? Date.now() : 0;
  }

  function noteTyping() {
    if (!textArea.value.trim()) {
      if (typingOn) sendTyping(false);
    } else if (!typingOn || Date.now() - typingSentAt >= TYPING_EVERY_MS) {
      sendTyping(true);
    }
  }

  function renderTyping() {
    const names = Array.from(new Set(Array.from(typers.values(), (t) => t.name)));
    let text = "";
    if (names.length === 1) text = names[0] + " is typing…";
    else if (names.length === 2) text = names[0] + " and " + names[1] + " are typing…";
    else if (names.length > 2) text = names.length + " people are typing…";
    typingEl.textContent = text;
  }

  function stopTyper(id) {
    const t = typers.get(id);
    if (!t) return;
    clearTimeout(t.timer);
    typers.delete(id);
    renderTyping();
  }

  function stopTypersNamed(name) {
    for (const [id, t] of Array.from(typers)) if (t.name === name) stopTyper(id);
  }

  function clearTypers() {
    for (const t of typers.values()) clearTimeout(t.timer);
    typers.clear();
    renderTyping();
  }

  function onEvent(ev) {
    if (ev.event !== "typing") return;
    const sender = ev.sender; // only clients type: server events have no sender
    if (!sender || typeof sender !== "object" || typeof sender.name !== "string") return;
    const id = String(sender.id);
    if (id === String(connId)) return;
    if (!(ev.data && typeof ev.data === "object" && ev.data.typing === true)) {
      stopTyper(id);
      return;
    }
    const old = typers.get(id);
    if (old) clearTimeout(old.timer);
    typers.set(id, { name: sender.name, timer: setTimeout(() => stopTyper(id), TYPING_TTL_MS) });
    renderTyping();
  }

  // ---------------------------------------------------------------- protocol events
  function onHello(ev) {
    helloSeen = true;
    connId = ev.id;
    maxTextBytes = typeof ev.max_text_bytes === "number" && ev.max_text_bytes > 0 ? ev.max_text_bytes : null;
    myName = typeof ev.name === "string" ? ev.name : nick;
    meName.textContent = myName;
    if (ev.epoch !== undefined && ev.epoch !== null) {
      const e = String(ev.epoch);
      if (epoch !== null && e !== epoch) newIncarnation();
      epoch = e;
    }
    members.clear();
    if (Array.isArray(ev.presence)) {
      for (const m of ev.presence) if (m && typeof m.name === "string") addMember(m.id, m.name);
    } else if (Array.isArray(ev.members)) {
      for (const name of ev.members) if (typeof name === "string") addMember(null, name);
    }
    if (!members.has("id:" + connId) && !Array.from(members.values()).includes(myName)) addMember(connId, myName);
    renderMembers();
    const wasReconnect = everConnected;
    everConnected = true;
    attempt = 0;
    setStatus("connected", "Connected");
    hideNotice("connection");
    systemLine(wasReconnect ? "Reconnected as " + myName : "Joined #" + room + " as " + myName, "conn");
    if (ev.recovered === false) {
      showNotice("Some messages from while you were away are no longer kept by the server " +
        "(it restarted or the room was busy); showing what it still has.", "gap");
    }
    // Messages typed while offline go out now; unconfirmed ones from an earlier socket get a
    // grace period to show up in the resume replay before we call them undelivered.
    const thisGen = gen;
    for (const p of pending.slice()) {
      if (p.state === "queued") transmit(p);
      else if (p.state === "sent" && p.gen !== thisGen) {
        setTimeout(() => {
          if (pending.includes(p) && p.state === "sent") {
            setPendingState(p, "failed", "not delivered: the connection dropped");
          }
        }, CONFIRM_GRACE_MS);
      }
    }
  }

  function newIncarnation() {
    seen.clear();
    systemLine("The server restarted and lost earlier history; messages start over from here.", "conn");
  }

  function onMessage(ev) {
    if (typeof ev.id !== "string" && typeof ev.id !== "number") return;
    const id = String(ev.id);
    const msg = {
      id,
      name: typeof ev.name === "string" ? ev.name : "?",
      text: typeof ev.text === "string" ? ev.text : String(ev.text ?? ""),
      ts: typeof ev.ts === "number" ? ev.ts : null,
      replay: ev.replay === true,
    };
    const known = seen.get(id);
    if (known) {
      const same = known.name === msg.name && known.text === msg.text &&
        (known.ts === null || msg.ts === null || known.ts === msg.ts);
      if (same) {
        if (known.ts === null && msg.ts !== null) known.ts = msg.ts;
        return; // duplicate: already on screen
      }
      newIncarnation(); // same id, different message: a new server incarnation reuses ids
    }
    remember(id, { name: msg.name, text: msg.text, ts: msg.ts });
    lastId = id;
    if (!msg.replay) stopTypersNamed(msg.name); // they sent what they were typing
    const mine = msg.name === myName ? pending.find((p) => p.text === msg.text && p.state !== "queued") : null;
    if (mine) confirmPending(mine, msg);
    else renderNew(msg);
  }

  function onAck(ev) {
    const p = pending.find((q) => q.ref === ev.ref);
    if (!p || ev.id === undefined || ev.id === null) return;
    const id = String(ev.id);
    if (seen.has(id)) {
      // The broadcast of this id is already on screen (from someone with our name and text).
      dropPending(p);
      p.li.remove();
      return;
    }
    remember(id, { name: myName, text: p.text, ts: null });
    confirmPending(p, { id, name: myName, text: p.text, ts: Date.now(), replay: false });
  }

  function onJoinLeave(ev) {
    if (typeof ev.name !== "string") return;
    if (ev.id !== undefined && ev.id === connId) return; // ourselves: counted from hello
    if (ev.type === "join") {
      addMember(ev.id, ev.name);
      systemLine(ev.name + " joined", "presence");
    } else {
      removeMember(ev.id, ev.name);
      stopTyper(String(ev.id));
      systemLine(ev.name + " left", "presence");
    }
    renderMembers();
  }

  function onError(ev) {
    const reason = typeof ev.reason === "string" && ev.reason ? ev.reason : "request refused";
    const code = ev.code !== undefined ? " (" + ev.code + ")" : "";
    showNotice("The server refused: " + reason + code, "refusal");
    // Errors answer our messages in order: blame the one named by ref, else the oldest unconfirmed.
    const p = pending.find((q) => ev.ref !== undefined && q.ref === ev.ref) ||
      pending.find((q) => q.state === "sent" && q.gen === gen);
    if (p) setPendingState(p, "failed", "refused: " + reason);
  }

  // ---------------------------------------------------------------- connection lifecycle
  // With WSAPP_REQUIRE_TOKEN=1 the page is opened as /chat/<room>?token=... (from
  // `python -m wsapp token`); the token is passed on to the socket, which takes the name from it.
  const token = new URLSearchParams(window.location.search).get("token");

  function socketUrl() {
    let url = wsUrl("/chat/" + encodeURIComponent(room)) + "?name=" + encodeURIComponent(nick);
    if (token) url += "&token=" + encodeURIComponent(token);
    if (lastId !== null) url += "&since=" + encodeURIComponent(lastId);
    return url;
  }

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = null;
    userClosed = false;
    helloSeen = false;
    gen += 1;
    const myGen = gen;
    setStatus(everConnected ? "reconnecting" : "connecting", everConnected ? "Reconnecting…" : "Connecting…");
    const sock = new WebSocket(socketUrl());
    ws = sock;
    root.dataset.socketUrl = sock.url;

    sock.addEventListener("message", (event) => {
      if (myGen !== gen || typeof event.data !== "string") return;
      let ev;
      try {
        ev = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (!ev || typeof ev !== "object") return;
      switch (ev.type) {
        case "hello": onHello(ev); break;
        case "message": onMessage(ev); break;
        case "ack": onAck(ev); break;
        case "join":
        case "leave": onJoinLeave(ev); break;
        case "error": onError(ev); break;
        case "event": onEvent(ev); break;
        default: break;
      }
    });

    sock.addEventListener("close", (event) => {
      if (myGen !== gen) return;
      const hadHello = helloSeen;
      ws = null;
      helloSeen = false;
      typingOn = false;
      clearTypers();
      for (const p of pending) if (p.state === "sent") p.stateEl.textContent = "waiting for confirmation…";
      if (userClosed) return;
      const detail = "code " + event.code + (event.reason ? ": " + event.reason : "");
      if (hadHello) {
        systemLine("Connection lost (" + detail + ")", "conn");
        showNotice("Connection lost (" + detail + "). Reconnecting…", "connection");
      } else if (event.code !== 1006) {
        showNotice("The server closed the connection (" + detail + "). Retrying…", "connection");
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    attempt += 1;
    retryAt = Date.now() + delay;
    const tick = () => {
      const s = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      setStatus("reconnecting", "Reconnecting in " + s + " s (attempt " + attempt + ")");
    };
    tick();
    clearInterval(countdownTimer);
    countdownTimer = setInterval(tick, 1000);
    retryTimer = setTimeout(connect, delay);
  }

  function retrySoon() {
    if (retryTimer !== null) connect();
  }

  window.addEventListener("online", retrySoon);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") retrySoon();
  });

  function leaveSocket() {
    userClosed = true;
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    retryTimer = null;
    if (ws) ws.close(1000, "leaving");
    ws = null;
  }

  // ---------------------------------------------------------------- nickname
  function validNick(value) {
    const v = value.trim();
    // 1 to 32 printable characters (no control characters).
    return v.length >= 1 && Array.from(v).length <= 32 && !/[\u0000-\u001f\u007f-\u009f]/.test(v) ? v : null;
  }

  function storedNick() {
    try {
      return validNick(localStorage.getItem(NICK_KEY) || "");
    } catch (err) {
      return null;
    }
  }

  function askNick() {
    nickForm.hidden = false;
    nickInput.value = nick || storedNick() || "";
    nickInput.focus();
    nickInput.select();
  }

  nickForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const v = validNick(nickInput.value);
    if (!v) {
      nickInput.setCustomValidity("1 to 32 printable characters");
      nickInput.reportValidity();
      return;
    }
    try {
      localStorage.setItem(NICK_KEY, v);
    } catch (err) {
      /* private mode: remember for this page only */
    }
    const changed = nick !== null && v !== nick;
    nick = v;
    nickForm.hidden = true;
    start(changed);
  });
  nickInput.addEventListener("input", () => nickInput.setCustomValidity(""));

  $("change-nick").addEventListener("click", askNick);

  function start(restart) {
    body.hidden = false;
    meName.textContent = nick;
    if (restart) {
      leaveSocket();
      connect();
    } else if (!ws && retryTimer === null) {
      connect();
    }
    textArea.focus();
  }

  // ---------------------------------------------------------------- composer
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = textArea.value;
    if (!text.trim()) return; // white space only is not a message (the server refuses it too)
    if (overLimit(text)) {
      showNotice("Not sent: " + limitSentence(text) + ". Shorten it and send again.", "limit");
      textArea.focus();
      return;
    }
    hideNotice("limit");
    submitText(text);
    textArea.value = "";
    if (typingOn) sendTyping(false);
    autoGrow();
    textArea.focus();
  });

  textArea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });

  function autoGrow() {
    textArea.style.height = "auto";
    textArea.style.height = Math.min(textArea.scrollHeight + 2, 160) + "px";
  }
  textArea.addEventListener("input", () => {
    autoGrow();
    noteTyping();
  });

  // ---------------------------------------------------------------- rooms
  wireRoomForm($("room-form"));

  async function refreshRooms() {
    apiRooms = await fetchRooms();
    renderRoomList();
  }
  refreshRooms();
  setInterval(() => {
    if (document.visibilityState === "visible") refreshRooms();
  }, 15000);

  window.addEventListener("pagehide", leaveSocket);
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && nick) connect(); // back from the back/forward cache
  });

  // ---------------------------------------------------------------- start
  const fromUrl = validNick(new URLSearchParams(window.location.search).get("name") || "");
  nick = fromUrl || storedNick();
  if (fromUrl) {
    try {
      localStorage.setItem(NICK_KEY, fromUrl);
    } catch (err) {
      /* ignore */
    }
  }
  if (nick) start(false);
  else askNick();
})();
