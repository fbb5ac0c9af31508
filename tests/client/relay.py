"""A TCP relay on loopback between a client and a server that a test can make lose the
server's answers: `mute()` drops what the server sends (e.g. an ack) until `cut()` resets
the client's connections (it sees the connection end without a close frame). New
connections after that are relayed normally."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class Relay:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.muted = threading.Event()
        self.dropped = 0  # bytes from the server thrown away while muted
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_server and self.muted.is_set():
                    self.dropped += len(data)
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def mute(self) -> None:
        self.muted.set()

    def cut(self) -> None:
        """Reset every relayed connection (RST to the client), then relay normally again."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            for s in (client, upstream):
                # shutdown wakes the pump blocked in recv (close alone would not)
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
        self.muted.clear()

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.cut()
        self.listener.close()
