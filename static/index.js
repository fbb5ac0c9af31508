/* Index page: live member counts per room from /api/rooms (optional). */
"use strict";

(function () {
  const { fetchRooms, renderRooms, wireRoomForm } = window.wsapp;
  const ul = document.getElementById("rooms");
  const status = document.getElementById("rooms-status");
  wireRoomForm(document.getElementById("room-form"));

  async function refresh() {
    const rooms = await fetchRooms();
    renderRooms(ul, rooms, null);
    status.textContent = rooms ? "" : "Live member counts are not available right now.";
  }

  refresh();
  setInterval(() => {
    if (document.visibilityState === "visible") refresh();
  }, 10000);
})();
