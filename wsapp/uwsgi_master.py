"""What uWSGI's master does for wsapp before it forks workers (deploy/uwsgi.ini `shared-import`).

Imported once in the master (the python plugin's shared imports run before the fork, in
lazy-apps mode too), so a bad configuration stops uWSGI with one line before any worker
starts, as gunicorn.conf.py does for gunicorn:

- every WSAPP_* variable is validated (`Settings.from_env`); a bad one exits with status 2;
- more than one worker without WSAPP_REDIS_URL is refused (each worker would hold its own
  rooms and chat would silently split);
- with several workers, Prometheus' multiprocess directory is set for all of them (a
  private directory named after this master, emptied of an earlier process's files)
  unless PROMETHEUS_MULTIPROC_DIR is set;
- a listener others can reach, with neither allowed hosts nor origins, gets one warning.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import tempfile

from wsapp.settings import Settings, SettingsError

try:
    import uwsgi
except ImportError as exc:  # pragma: no cover - only under uWSGI
    raise ImportError(
        "wsapp.uwsgi_master is imported by uWSGI's master (deploy/uwsgi.ini)"
    ) from exc

PROMETHEUS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _fail(message: str) -> None:
    sys.stderr.write(f"wsapp: configuration error: {message}\n")
    sys.stderr.flush()
    sys.exit(2)  # uWSGI prints the import error of a shared import; SystemExit ends the master


def _private_dir(path: str) -> bool:
    """Create `path` 0700, refusing one another user owns or a symlink (as wsapp.metrics)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()


def _forget_stale(path: str) -> None:
    """Files left by an earlier process that had this pid (pids are reused): not ours."""
    for name in os.listdir(path):
        if name.endswith(".db"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(path, name))


def _listeners() -> list[object]:
    found = []
    for fd in getattr(uwsgi, "sockets", ()) or ():
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                found.append(sock.getsockname())
        except OSError:
            continue
    return found


def check() -> Settings:
    """Validate the configuration for this uWSGI instance; exits with status 2 if it is bad."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _fail(str(exc))
    workers = int(uwsgi.numproc)
    if workers > 1 and not settings.redis_url:
        _fail(
            f"{workers} uWSGI workers need WSAPP_REDIS_URL: with the in-process memory broker "
            "each worker would hold its own rooms and chat would silently split. Set "
            "WSAPP_REDIS_URL=redis://HOST:6379/0, or run 1 worker (WSAPP_WORKERS=1)."
        )
    configured = os.environ.get(PROMETHEUS_ENV) or os.environ.get(PROMETHEUS_ENV.lower())
    if workers > 1 and not configured:  # (a reload re-executes the master: then configured)
        path = os.path.join(tempfile.gettempdir(), f"wsapp-prometheus-{os.getuid()}-{os.getpid()}")
        if _private_dir(path):
            _forget_stale(path)
            os.environ[PROMETHEUS_ENV] = path
    from wsapp.admission import public_bind_warning

    for address in _listeners():
        exposed = public_bind_warning(settings, address)
        if exposed:
            sys.stderr.write(f"wsapp: WARNING: {exposed}\n")
    return settings


check()
