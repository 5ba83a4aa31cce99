"""requests: an adapter mounted on a wrapped Session after ``wrap()`` is traced too."""

from __future__ import annotations

import pickle

import pytest
from support.server import ScriptedServer, response
from support.trace import records

import zltrace

requests = pytest.importorskip("requests", reason="requests is not installed (test extra)")
from requests.adapters import HTTPAdapter  # noqa: E402
from urllib3.util.retry import Retry  # noqa: E402


def test_adapter_mounted_after_wrap_is_traced(tracer: zltrace.Tracer) -> None:
    """An adapter mounted (own retries) after wrap(Session()) has its exchanges recorded."""
    replies = [response(503, b"busy"), response(200, b"fine")]
    with ScriptedServer(replies) as srv:
        s = zltrace.wrap(requests.Session(), tracer=tracer)
        adapter = HTTPAdapter(max_retries=Retry(total=2, status_forcelist=[503], backoff_factor=0))
        s.mount("http://", adapter)
        r = s.get(srv.url + "/flaky")
        assert (r.status_code, r.content) == (200, b"fine")
        s.close()
    first, second = records(tracer)
    assert [first.response.status, second.response.status] == [503, 200]  # type: ignore[union-attr]
    assert first.logical_id == second.logical_id == first.id


def test_adapter_put_in_adapters_directly_is_traced(tracer: zltrace.Tracer) -> None:
    """An adapter placed in session.adapters by hand after wrap() is traced when it is used."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        s = zltrace.wrap(requests.Session(), tracer=tracer)
        s.adapters[srv.url] = HTTPAdapter()
        assert s.get(srv.url + "/direct").content == b"ok"
        s.close()
    (ex,) = records(tracer)
    assert ex.request.url == srv.url + "/direct"


def test_wrapped_session_pickles_as_a_plain_session(tracer: zltrace.Tracer) -> None:
    """A wrapped Session pickles; it comes back as a plain, untraced requests.Session."""
    s = zltrace.wrap(requests.Session(), tracer=tracer)
    back = pickle.loads(pickle.dumps(s))
    assert type(back) is requests.Session
    assert not hasattr(back, "_zl_tracer")
