"""``wss://`` through a real nginx terminating TLS with a certificate made by the test
(openssl: a throwaway CA and a server certificate for 127.0.0.1), for both clients."""

from __future__ import annotations

import asyncio
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.support import CLIENT_ENV, new_room
from tests.support.servers import ROOT, free_port, running_server, wait_for_port
from wsapp.client import AsyncClient, Client, TLSError

sys.path.insert(0, str(ROOT / "deploy"))
from render_nginx import render_site, render_standalone  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

pytestmark = pytest.mark.skipif(not Path(NGINX).exists() or not Path(OPENSSL).exists(),
                                reason="needs nginx and openssl")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(where: Path) -> dict[str, Path]:
    """A CA, and a server certificate it signed for IP 127.0.0.1 only."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=wsapp test CA", cwd=where)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=127.0.0.1", cwd=where)
    (where / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n"
                                   "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.cnf",
             cwd=where)
    return {"ca": where / "ca.pem", "server": where / "server.pem", "key": where / "server.key"}


@pytest.fixture(scope="module")
def tls_proxy() -> Iterator[tuple[int, Path]]:
    """nginx on 127.0.0.1:<port> with TLS, in front of a wsapp server; (port, CA file)."""
    work = Path(tempfile.mkdtemp(prefix="wsapp-tls-"))
    certs = make_certificates(work)
    env = {**CLIENT_ENV, "WSAPP_TRUSTED_PROXIES": "1"}
    with running_server("serve", env=env) as backend:
        port = free_port()
        site = render_site([f"127.0.0.1:{backend.port}"], listen=f"127.0.0.1:{port} ssl",
                           static_root=ROOT / "static", upstream_options="max_fails=1")
        site = site.replace(
            "  # wsapp-listen",
            f"  # wsapp-listen\n    ssl_certificate {certs['server']};\n"
            f"    ssl_certificate_key {certs['key']};", 1)
        prefix = work / "nginx"
        conf = render_standalone(prefix, site)
        (prefix / "nginx.conf").write_text(conf)
        proc = subprocess.Popen(
            [NGINX, "-p", f"{prefix}/", "-e", f"{prefix}/logs/error.log", "-c",
             f"{prefix}/nginx.conf", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port("127.0.0.1", port, proc=proc)
            yield port, certs["ca"]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            shutil.rmtree(work, ignore_errors=True)


def test_wss_with_the_test_ca_sync(tls_proxy) -> None:
    port, ca = tls_proxy
    url = f"wss://127.0.0.1:{port}/chat/{new_room('tls')}"
    with Client(ca_file=str(ca)) as a, Client(ssl=ssl.create_default_context(cafile=ca),
                                              queue_events=True) as b:
        b.connect(url, name="b")
        assert a.connect(url, name="a")["name"] == "a"
        message_id = a.send("over TLS")
        event = b.receive(timeout=5)
        while event["type"] != "message":
            event = b.receive(timeout=5)
        assert (event["text"], event["id"]) == ("over TLS", message_id)
    with Client(ca_file=str(ca), queue_events=True) as echo:  # https:// means wss://
        echo.connect(f"https://127.0.0.1:{port}/echo")
        echo.send("secure echo")
        assert [echo.receive(timeout=5) for _ in range(2)][1]["text"] == "secure echo"


def test_wss_with_the_test_ca_async(tls_proxy) -> None:
    port, ca = tls_proxy

    async def scenario() -> str:
        async with AsyncClient(ca_file=str(ca)) as c:
            await c.connect(f"wss://127.0.0.1:{port}/chat/{new_room('atls')}")
            return await c.send("async over TLS")

    assert isinstance(asyncio.run(asyncio.wait_for(scenario(), 20)), str)


def test_an_untrusted_certificate_is_a_tls_error(tls_proxy) -> None:
    port, _ = tls_proxy
    with pytest.raises(TLSError) as info:  # the system's CA store does not know the test CA
        Client(max_tries=5).connect(f"wss://127.0.0.1:{port}/echo", retry=True)
    assert "not trusted" in str(info.value) and "ca_file" in str(info.value)
    assert info.value.permanent  # not retried: max_tries would have made it GaveUp

    async def scenario() -> None:
        with pytest.raises(TLSError):
            await AsyncClient().connect(f"wss://127.0.0.1:{port}/echo")

    asyncio.run(scenario())


def test_a_certificate_for_another_name_is_a_tls_error(tls_proxy) -> None:
    port, ca = tls_proxy
    with pytest.raises(TLSError, match="not trusted"):  # the certificate names 127.0.0.1 only
        Client(ca_file=str(ca)).connect(f"wss://localhost:{port}/echo")


def test_a_missing_ca_file_is_a_clear_error() -> None:
    with pytest.raises(TLSError, match="cannot load the CA file"):
        Client(ca_file="/nonexistent/ca.pem")
