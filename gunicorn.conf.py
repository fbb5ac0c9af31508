"""gunicorn settings for wsapp: `gunicorn -c gunicorn.conf.py wsgi:app` (`-b` overrides bind).

Serves any WSGI app the same way: copy this file next to your own module and run
`gunicorn -c gunicorn.conf.py module:app` (or `module:create_app()`) with wsapp installed
(`pip install /path/to/wsapp-checkout`); nothing here imports this repository's wsgi.py.

Everything comes from WSAPP_* variables, validated here so a bad value stops the master
with a clear message before any worker starts.
"""

import sys

try:
    from wsapp import fdlimits
    from wsapp.settings import Settings, SettingsError
except ModuleNotFoundError as exc:
    if exc.name != "wsapp":
        raise
    sys.stderr.write(
        f"wsapp: gunicorn.conf.py: wsapp is not installed for {sys.executable}: "
        "pip install it (pip install /path/to/wsapp-checkout) in the environment gunicorn runs in\n"
    )
    sys.exit(2)

fdlimits.raise_nofile()  # soft RLIMIT_NOFILE up to the hard limit; the workers inherit it

try:
    _settings = Settings.from_env()
except SettingsError as exc:
    sys.stderr.write(f"wsapp: configuration error: {exc}\n")
    sys.exit(2)

worker_class = "wsapp.protocol.worker.WsappWorker"
workers = _settings.workers
bind = [_settings.bind or f"{_settings.host}:{_settings.port}"]

# Each WebSocket holds one greenlet slot for its whole life: gunicorn's 1000 is far too few.
worker_connections = max(10_000, _settings.max_connections + 1000)

# The gevent worker heartbeats every second, so `timeout` only catches a wedged process;
# long-lived sockets are unaffected. On SIGTERM our worker closes sockets with 1001 at
# once; graceful_timeout only bounds the wait for the close handshakes.
timeout = 30
graceful_timeout = max(5, int(_settings.close_timeout * 2 + 3))
keepalive = 5

# Two instances on one machine would collide on ~/.gunicorn/gunicorn.ctl; we use none.
# Pass --control-socket PATH to enable gunicornc for one instance.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
# The app trusts X-Forwarded-* only through WSAPP_TRUSTED_PROXIES (ProxyFix), not gunicorn.
forwarded_allow_ips = "127.0.0.1,::1"


def _refuse_split_rooms(workers: int) -> str | None:
    if workers > 1 and not _settings.redis_url:
        return (
            f"{workers} workers need WSAPP_REDIS_URL: with the in-process memory broker each "
            "worker would hold its own rooms and chat would silently split. Set WSAPP_REDIS_URL="
            "redis://HOST:6379/0, or run 1 worker (WSAPP_WORKERS=1, no -w)."
        )
    return None


def on_starting(server):
    """Refuse more than one worker without Redis, however it was asked for (`-w N` on the
    command line, `workers` in a config): Settings.check() only sees WSAPP_WORKERS."""
    problem = _refuse_split_rooms(server.cfg.workers)
    if problem:
        sys.stderr.write(f"wsapp: configuration error: {problem}\n")
        sys.stderr.flush()
        sys.exit(2)
    redis = bool(_settings.redis_url)
    server.log.info("wsapp %s", fdlimits.describe(_settings.max_connections, redis))
    warning = fdlimits.capacity_warning(_settings.max_connections, redis)
    if warning:
        server.log.warning("wsapp: %s", warning)


def when_ready(server):
    """One warning per listener others can reach when no allowed hosts or origins are set
    (the embedded server says the same): the app then serves any Host (DNS rebinding)."""
    from wsapp.admission import public_bind_warning

    for listener in server.LISTENERS:
        exposed = public_bind_warning(_settings, listener.sock.getsockname())
        if exposed:
            server.log.warning("wsapp: %s", exposed)


def nworkers_changed(server, new_value, old_value):
    """SIGTTIN at run time: stay at one worker without Redis (a split would be silent)."""
    if old_value is not None and _refuse_split_rooms(new_value):
        server.log.error(
            "wsapp: refusing %d workers: %s", new_value, _refuse_split_rooms(new_value)
        )
        server._num_workers = old_value


def child_exit(server, worker):
    """In the master, once a worker has exited (however: crash, SIGKILL, timeout): its
    connections are gone, so free what it counted in the shared per-IP table at once."""
    from wsapp import ipcap

    ipcap.worker_exited(worker.pid)
