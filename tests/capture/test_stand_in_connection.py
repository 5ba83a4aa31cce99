"""A connection object that is not urllib3's (a test's ``Mock``) is the app's: left untouched.

Under ``wrap()`` and under ``install()``, a mock connection handed to ``_make_request`` sees
exactly the calls urllib3 makes on it, whether the request succeeds or fails; its exchange is
counted as unrecorded, never as a capture failure.
"""

from __future__ import annotations

import warnings
from typing import Any
from unittest import mock

import pytest
import urllib3

import zltrace
from zltrace._pipeline.events import capture_failures


def calls_made(pool: Any, conn: Any) -> tuple[Any, list[Any]]:
    """``pool._make_request(conn, ...)``: what it returned or raised, and the calls on ``conn``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", zltrace.ZltraceWarning)
        try:
            outcome: Any = pool._make_request(conn, "GET", "/")
        except Exception as e:
            outcome = e
    return outcome, conn.mock_calls


@pytest.mark.parametrize("route", ["wrap", "install"])
@pytest.mark.parametrize("fails", [False, True], ids=["answers", "raises"])
def test_mock_connection_sees_only_urllib3s_calls(
    route: str, fails: bool, tracer: zltrace.Tracer
) -> None:
    """A Mock connection gets the same calls traced as bare; no capture failure is counted."""
    bare_conn, traced_conn = mock.Mock(), mock.Mock()
    for conn in (bare_conn, traced_conn):
        if fails:
            conn.request.side_effect = ConnectionResetError("stand-in")
        conn.getresponse.return_value = urllib3.HTTPResponse(b"canned", status=200)
    failures = sum(capture_failures().values())
    bare = calls_made(urllib3.HTTPConnectionPool("127.0.0.1", 9), bare_conn)
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 9)
    if route == "wrap":
        traced = calls_made(zltrace.wrap(pool, tracer=tracer), traced_conn)
    else:
        zltrace.install(tracer)
        try:
            traced = calls_made(pool, traced_conn)
        finally:
            zltrace.uninstall()
    assert traced[1] == bare[1]
    assert type(traced[0]) is type(bare[0])
    assert sum(capture_failures().values()) == failures
    assert tracer.stats()["unrecorded_exchanges"]["not an http.client connection"] >= 1
