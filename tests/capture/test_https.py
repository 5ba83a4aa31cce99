"""HTTPS: the tee sees decrypted bytes, and a CONNECT tunnel through a proxy is not an exchange."""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from support.server import accept_each
from support.trace import records

import zltrace

trustme = pytest.importorskip("trustme")

BODY = b'{"type":"message","content":[{"type":"text","text":"caf\xc3\xa9"}]}'


class TLSServer:
    """A loopback HTTPS server answering every request with BODY (keep-alive)."""

    def __init__(self, ca: trustme.CA) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(self.ctx)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        accept_each(self.sock, self._serve)

    def _serve(self, raw: socket.socket) -> None:
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as conn:
                buf = b""
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    _, _, buf = buf.partition(b"\r\n\r\n")
                    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
        except (OSError, ssl.SSLError):
            return

    def close(self) -> None:
        self.sock.close()


class ConnectProxy:
    """A loopback forward proxy that only does CONNECT tunnels; records the CONNECT lines."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connects: list[bytes] = []
        accept_each(self.sock, self._tunnel)

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(4096)
                if not data:
                    return
                head += data
            line = head.split(b"\r\n", 1)[0]
            self.connects.append(line)
            host, port = line.split()[1].decode().rsplit(":", 1)
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pair = {client: upstream, upstream: client}
                while True:
                    ready, _, _ = select.select(list(pair), [], [], 5)
                    if not ready:
                        return
                    for s in ready:
                        data = s.recv(65536)
                        if not data:
                            return
                        pair[s].sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[TLSServer]:
    """An HTTPS server on 127.0.0.1."""
    srv = TLSServer(ca)
    yield srv
    srv.close()


def test_https_pool_records_the_decrypted_exchange(
    tracer: zltrace.Tracer, tls_server: TLSServer, ca: trustme.CA, tmp_path: Path
) -> None:
    """Through TLS the tee sees plaintext; the URL is https:// with the port."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    pool = tracer.wrap(
        urllib3.HTTPSConnectionPool("127.0.0.1", tls_server.port, ca_certs=str(ca_file))
    )
    r = pool.urlopen("POST", "/v1/messages", body=b"{}", headers={"x-api-key": "sk-ant-123"})
    assert r.data == BODY
    pool.close()
    (ex,) = records(tracer)
    assert ex.request.url == f"https://127.0.0.1:{tls_server.port}/v1/messages"
    assert ex.request.header("x-api-key") != "sk-ant-123"
    assert ex.response is not None and ex.response.raw_body == BODY
    assert ex.outcome == "complete"
    assert b"sk-ant-123" not in Path(tracer.path).read_bytes()


def test_connect_tunnel_is_not_recorded_as_an_exchange(
    tracer: zltrace.Tracer, tls_server: TLSServer, ca: trustme.CA, tmp_path: Path
) -> None:
    """HTTPS through a proxy: one exchange for the real request, none for the CONNECT."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    proxy = ConnectProxy()
    manager = tracer.wrap(
        urllib3.ProxyManager(
            f"http://127.0.0.1:{proxy.port}",
            ca_certs=str(ca_file),
            proxy_headers={"Proxy-Authorization": "Basic c2VjcmV0"},
        )
    )
    for _ in range(2):
        r = manager.request("GET", f"https://127.0.0.1:{tls_server.port}/tunnelled")
        assert r.data == BODY
    manager.clear()
    proxy.close()
    assert proxy.connects and proxy.connects[0].startswith(b"CONNECT 127.0.0.1:")
    exchanges = records(tracer)
    assert [ex.request.method for ex in exchanges] == ["GET", "GET"]
    assert all(
        ex.request.url == f"https://127.0.0.1:{tls_server.port}/tunnelled" for ex in exchanges
    )
    assert all(ex.response is not None and ex.response.raw_body == BODY for ex in exchanges)
    assert b"c2VjcmV0" not in Path(tracer.path).read_bytes()
