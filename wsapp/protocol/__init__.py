"""Our RFC 6455 layer on top of gevent-websocket: pure framing, hardened socket, handler, worker."""
