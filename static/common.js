/* Shared helpers for the wsapp pages. Plain browser JavaScript, no build step.
 * Everything that shows peer-supplied data goes through textContent (never innerHTML). */
"use strict";

window.wsapp = (function () {
  /** Create an element with an optional class and text (text is always textContent). */
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** ws:// or wss:// URL for a path on the server that served this page. */
  function wsUrl(path) {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + path;
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  /** HH:MM:SS in local time for a Unix-ms timestamp. */
  function clock(ts) {
    const d = new Date(ts);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function formatBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(n % 1024 ? 1 : 0) + " KiB";
    return (n / 1024 / 1024).toFixed(2) + " MiB";
  }

  function formatMs(ms) {
    if (ms < 10) return ms.toFixed(2) + " ms";
    if (ms < 100) return ms.toFixed(1) + " ms";
    return Math.round(ms) + " ms";
  }

  const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;

  /**
   * GET /api/rooms and normalise to [{room, members}] (members: a count, or null if unknown).
   * Accepts {"rooms": [...]} or a bare list, entries with room|name and a count or a list of
   * members. Resolves to null when the API is missing or broken: callers fall back gracefully.
   */
  async function fetchRooms() {
    try {
      const resp = await fetch("/api/rooms", { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!resp.ok) return null;
      const data = await resp.json();
      const list = Array.isArray(data) ? data : (data && Array.isArray(data.rooms) ? data.rooms : null);
      if (!list) return null;
      const rooms = [];
      for (const item of list) {
        const entry = typeof item === "string" ? { room: item } : item || {};
        const name = entry.room ?? entry.name;
        if (typeof name !== "string" || !ROOM_RE.test(name)) continue;
        let count = entry.members ?? entry.count ?? entry.member_count ?? null;
        if (Array.isArray(count)) count = count.length;
        rooms.push({ room: name, members: typeof count === "number" ? count : null });
      }
      return rooms;
    } catch (err) {
      return null;
    }
  }

  /**
   * Fill a <ul> with links to rooms: those the API knows (with member counts) plus the
   * default ones; `current` is marked with aria-current.
   */
  function renderRooms(ul, apiRooms, current) {
    const defaults = (ul.dataset.defaultRooms || "").split(",").filter(Boolean);
    const byName = new Map();
    for (const name of defaults) byName.set(name, null);
    if (current) byName.set(current, null);
    for (const r of apiRooms || []) byName.set(r.room, r.members);
    const names = Array.from(byName.keys()).sort((a, b) => {
      const ca = byName.get(a) || 0;
      const cb = byName.get(b) || 0;
      return cb - ca || a.localeCompare(b);
    });
    ul.replaceChildren();
    for (const name of names.slice(0, 50)) {
      const li = el("li");
      const a = el("a", null, "#" + name);
      a.href = "/chat/" + encodeURIComponent(name);
      if (name === current) a.setAttribute("aria-current", "page");
      li.append(a);
      const count = byName.get(name);
      if (apiRooms && count !== null && count !== undefined) {
        const badge = el("span", "count", String(count));
        badge.title = count === 1 ? "1 member online" : count + " members online";
        a.append(" ", badge, el("span", "visually-hidden", " online"));
      }
      ul.append(li);
    }
  }

  /** Wire a room form so it navigates to /chat/<room> (the server also handles ?room=). */
  function wireRoomForm(form) {
    if (!form) return;
    form.addEventListener("submit", (event) => {
      const input = form.querySelector("input[name=room]");
      const room = input.value.trim();
      event.preventDefault();
      if (!ROOM_RE.test(room)) {
        input.setCustomValidity("1 to 64 of A-Z a-z 0-9 _ - .");
        input.reportValidity();
        return;
      }
      window.location.assign("/chat/" + encodeURIComponent(room));
    });
    const input = form.querySelector("input[name=room]");
    input.addEventListener("input", () => input.setCustomValidity(""));
  }

  return { el, wsUrl, clock, formatBytes, formatMs, fetchRooms, renderRooms, wireRoomForm, ROOM_RE };
})();
