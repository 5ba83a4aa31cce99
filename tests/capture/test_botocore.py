"""boto3/botocore: ``wrap(client)`` traces in place and changes nothing botocore does.

Real boto3 clients (dummy credentials) against loopback servers: the traced call returns
what the untraced one returns, the trace holds the request and response bytes the server
saw and sent, and botocore's own connection classes (``Expect: 100-continue``) are kept.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support.server import ScriptedServer, response
from support.trace import records

import zltrace

boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (test extra)")
from botocore.awsrequest import AWSHTTPConnection  # noqa: E402
from botocore.config import Config as BotoConfig  # noqa: E402

CONVERSE_REPLY = json.dumps(
    {
        "output": {"message": {"role": "assistant", "content": [{"text": "pong"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
        "metrics": {"latencyMs": 7},
    }
).encode()
JSON = [("Content-Type", "application/json")]


def client(service: str, url: str) -> Any:
    """A boto3 client with dummy credentials whose endpoint is ``url``; no retries."""
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=BotoConfig(retries={"max_attempts": 1, "mode": "standard"}),
    )


def converse(c: Any) -> dict[str, Any]:
    """One bedrock-runtime converse call, its metadata dropped (it holds a random id)."""
    out: dict[str, Any] = c.converse(
        modelId="m", messages=[{"role": "user", "content": [{"text": "ping"}]}]
    )
    out.pop("ResponseMetadata")
    return out


def test_wrapped_client_returns_what_the_untraced_one_returns(open_tracer: zltrace.Tracer) -> None:
    """wrap(boto3 client) is in place; converse gives the same result; the trace is exact."""
    with ScriptedServer([response(200, CONVERSE_REPLY, JSON)]) as srv:
        untraced = converse(client("bedrock-runtime", srv.url))
        c = client("bedrock-runtime", srv.url)
        assert zltrace.wrap(c, tracer=open_tracer) is c
        traced = converse(c)
    assert traced == untraced
    assert traced["output"]["message"]["content"] == [{"text": "pong"}]
    (ex,) = records(open_tracer)
    wire = srv.requests[1]
    assert ex.request.method == "POST" == wire.method
    assert ex.request.url == srv.url + wire.target
    assert ex.request.headers == wire.headers
    assert ex.request.body == wire.body
    assert json.loads(wire.body)["messages"][0]["content"] == [{"text": "ping"}]
    assert ex.outcome == "complete" and ex.response is not None
    assert ex.response.status == 200 and ex.response.raw_body == CONVERSE_REPLY


def test_wrapping_the_pool_manager_keeps_boto3_working(tracer: zltrace.Tracer) -> None:
    """wrap(client._endpoint.http_session._manager): botocore writes response_class freely."""
    with ScriptedServer([response(200, CONVERSE_REPLY, JSON)]) as srv:
        c = client("bedrock-runtime", srv.url)
        zltrace.wrap(c._endpoint.http_session._manager, tracer=tracer)
        assert converse(c)["stopReason"] == "end_turn"
    (ex,) = records(tracer)
    assert ex.response is not None and ex.response.raw_body == CONVERSE_REPLY


def test_traced_connection_takes_response_class_writes(tracer: zltrace.Tracer) -> None:
    """A traced botocore connection accepts response_class writes, as the untraced one does."""
    c = client("s3", "http://127.0.0.1:9")
    zltrace.wrap(c, tracer=tracer)
    manager = c._endpoint.http_session._manager
    conn_cls = manager.pool_classes_by_scheme["http"].ConnectionCls
    assert issubclass(conn_cls, AWSHTTPConnection) and conn_cls.__name__ == "AWSHTTPConnection"
    conn = conn_cls("127.0.0.1", 9)
    original = conn.response_class
    conn.response_class = int
    assert conn.response_class is int
    conn.close()  # AWSConnection.close() writes it back
    assert conn.response_class is original


class ExpectServer:
    """One-connection loopback server for ``Expect: 100-continue``: answers 100 then 200, or
    (``early``) a final 403 right after the head, without reading the body."""

    def __init__(self, early: bool) -> None:
        self.early = early
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.reply = (
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: 61\r\n"
            b"Connection: close\r\n\r\n"
            b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>"
            if early
            else b'HTTP/1.1 200 OK\r\nETag: "abc"\r\nContent-Length: 0\r\n\r\n'
        )
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with sock:
                f = sock.makefile("rb")
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = f.readline()
                    if not line:
                        break
                    head += line
                self.heads.append(head)
                if not self.early:
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    length = next(
                        int(h.split(b":")[1])
                        for h in head.split(b"\r\n")
                        if h.lower().startswith(b"content-length:")
                    )
                    self.bodies.append(f.read(length))
                sock.sendall(self.reply)
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(
    params=[
        pytest.param(False, id="continue"),
        pytest.param(True, id="early-answer"),
    ]
)
def expect_server(request: pytest.FixtureRequest) -> Iterator[ExpectServer]:
    """An ExpectServer that answers 100 Continue, then one that answers 403 at once."""
    srv = ExpectServer(early=request.param)
    yield srv
    srv.close()


def put(c: Any) -> Any:
    """An S3 put_object with a file body (botocore sends it with Expect: 100-continue)."""
    try:
        return c.put_object(Bucket="b", Key="k", Body=io.BytesIO(b"object-bytes"))[
            "ResponseMetadata"
        ]["HTTPStatusCode"]
    except Exception as e:  # botocore's ClientError for the 403
        return type(e).__name__, str(e)


@pytest.mark.parametrize("route", ["wrap", "install"])
def test_expect_100_continue_is_botocores_and_traced(
    expect_server: ExpectServer, tracer: zltrace.Tracer, route: str
) -> None:
    """S3 put with Expect: 100-continue: same outcome traced as untraced, both answers recorded."""
    untraced = put(client("s3", expect_server.url))
    c = client("s3", expect_server.url)
    if route == "wrap":
        zltrace.wrap(c, tracer=tracer)
        traced = put(c)
    else:
        zltrace.install(tracer)
        try:
            traced = put(c)
        finally:
            zltrace.uninstall()
    assert traced == untraced
    (ex,) = records(tracer)
    assert b"expect: 100-continue" in expect_server.heads[1].lower()
    assert ex.request.header("expect") == "100-continue"
    assert ex.response is not None
    if expect_server.early:
        assert "AccessDenied" in traced[1]
        assert ex.response.status == 403
        assert ex.response.raw_body == expect_server.reply.split(b"\r\n\r\n", 1)[1]
        assert not ex.request.body  # botocore never sent it
    else:
        assert traced == 200 and expect_server.bodies[1] == b"object-bytes"
        assert ex.response.status == 200 and ex.request.body == b"object-bytes"
