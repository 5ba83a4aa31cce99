"""The default redaction rules against real header and parameter names from the providers'
documentation, and passwords in a URL's userinfo wherever a URL is stored.

Counters (rate limits, token usage) stay readable: they are what a user debugging a 429
needs. Credentials of the LLM APIs and the clouds become fingerprints.

The tests that trace run with both formats (``trace_format``): each encodes what it stores
in its own code (JSON lines: the assembler; raw: the record encoder).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import urllib3
from support.server import ScriptedServer, response
from support.trace import records

import zltrace
from zltrace._pipeline.redact import Redactor
from zltrace.config import DEFAULT_REDACT_HEADERS, DEFAULT_REDACT_QUERY

CREDENTIAL_HEADERS = [
    "Authorization",
    "Proxy-Authorization",
    "Cookie",
    "Set-Cookie",
    "x-api-key",  # Anthropic
    "api-key",  # Azure OpenAI
    "apikey",  # Supabase
    "Ocp-Apim-Subscription-Key",  # Azure API Management, Azure AI services
    "X-Auth-Key",  # Cloudflare
    "X-Auth-User-Service-Key",  # Cloudflare
    "DD-API-KEY",  # Datadog
    "DD-APPLICATION-KEY",  # Datadog
    "x-goog-api-key",  # Google (Gemini)
    "x-goog-iam-authorization-token",  # Google Cloud
    "x-goog-encryption-key",  # Google Cloud Storage customer-supplied key
    "x-amz-security-token",  # AWS temporary credentials
    "x-amz-server-side-encryption-customer-key",  # AWS S3 SSE-C
    "x-ms-authorization-auxiliary",  # Azure Resource Manager
    "x-ms-encryption-key",  # Azure Storage customer-provided key
    "x-functions-key",  # Azure Functions
    "X-Auth-Token",
    "X-Vault-Token",
    "PRIVATE-TOKEN",  # GitLab
    "x-client-secret",
    "x-webhook-secret",
]

COUNTER_HEADERS = [
    # Anthropic
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-limit",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
    "anthropic-organization-id",
    "request-id",
    "retry-after",
    # OpenAI (and Azure OpenAI)
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-limit-tokens_usage_based",
    "x-ratelimit-remaining-tokens_usage_based",
    "x-ratelimit-reset-tokens_usage_based",
    "openai-processing-ms",
    "openai-organization",
    "x-request-id",
    "Idempotency-Key",
    # Bedrock
    "x-amzn-bedrock-input-token-count",
    "x-amzn-bedrock-output-token-count",
    "x-amzn-bedrock-cache-read-input-token-count",
    "x-amzn-bedrock-cache-write-input-token-count",
    "x-amzn-bedrock-invocation-latency",
    "x-amzn-requestid",
    # Google
    "x-goog-user-project",
    "x-goog-request-params",
    "x-goog-encryption-key-sha256",
    # generic
    "X-RateLimit-Remaining",
    "RateLimit-Reset",
]


@pytest.mark.parametrize("name", CREDENTIAL_HEADERS)
def test_credential_headers_are_redacted(name: str) -> None:
    """Every credential header of the LLM APIs and the clouds becomes a fingerprint."""
    assert Redactor(DEFAULT_REDACT_HEADERS).is_secret(name)


@pytest.mark.parametrize("name", COUNTER_HEADERS)
def test_rate_limit_and_usage_headers_stay_readable(name: str) -> None:
    """Rate-limit, usage and request-id headers are written as they came."""
    r = Redactor(DEFAULT_REDACT_HEADERS)
    assert not r.is_secret(name)
    assert r.kind(name) == 0


@pytest.mark.parametrize(
    ("param", "secret"),
    [
        ("private_key", True),
        ("pwd", True),
        ("password", True),
        ("access_token", True),
        ("refresh_token", True),
        ("id_token", True),
        ("X-Amz-Security-Token", True),
        ("client_secret", True),
        ("key", True),
        ("api_key", True),
        ("apikey", True),
        ("sig", True),
        ("X-Goog-Signature", True),
        ("max_tokens", False),
        ("max_output_tokens", False),
        ("alt", False),
        ("page_size", False),
        ("model", False),
    ],
)
def test_query_rules(param: str, secret: bool) -> None:
    """Credential parameters are redacted; counters such as ``max_tokens`` stay readable."""
    url, found = Redactor([], query=DEFAULT_REDACT_QUERY).target(f"/v1/x?{param}=VALUE1&a=b")
    assert ("VALUE1" not in url) is secret
    assert bool(found) is secret


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:PASS@host/p", "http://user:redacted-sha256-T@host/p"),
        ("https://u:p%40SS@host:8443/p?q=1", "https://u:redacted-sha256-T@host:8443/p?q=1"),
        ("http://user:PA:SS@host/", "http://user:redacted-sha256-T@host/"),
        ("http://user@host/p", "http://user@host/p"),
        ("http://host/p?next=http://u:x@h/", "http://host/p?next=http://u:x@h/"),
        ("/relative/path", "/relative/path"),
    ],
)
def test_userinfo_password_redacted(url: str, shown: str) -> None:
    """The password of a URL's userinfo becomes ``redacted-sha256-<12 hex>``; the user stays."""
    out, _ = Redactor([]).target(url)
    assert re.sub(r"redacted-sha256-[0-9a-f]{12}", "redacted-sha256-T", out) == shown


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_proxy_absolute_form_userinfo_never_reaches_disk(tmp_path: Path, trace_format: str) -> None:
    """Through a ProxyManager, ``http://user:PASS@host/`` is recorded without the password."""
    d = tmp_path / "t"
    t = zltrace.Tracer(zltrace.Config(dir=str(d), flush_ms=10, format=trace_format))
    with ScriptedServer([response(200, b"ok")], keep_alive=False) as proxy:
        pm = urllib3.ProxyManager(proxy.url)
        try:
            zltrace.wrap(pm, tracer=t)
            r = pm.request("GET", "http://alice:S3CRETPW@example.invalid/a?b=1")
            assert r.data == b"ok"
        finally:
            pm.clear()
        assert "S3CRETPW" in proxy.requests[0].target  # the app's request went out unchanged
    (ex,) = records(t)
    assert re.fullmatch(
        r"http://alice:redacted-sha256-[0-9a-f]{12}@example\.invalid/a\?b=1", ex.request.url
    )
    assert b"S3CRETPW" not in _all_bytes(d)


def test_location_referer_and_content_location_userinfo_redacted(
    tmp_path: Path, trace_format: str
) -> None:
    """URL-valued headers lose their userinfo passwords, in requests and responses."""
    d = tmp_path / "t"
    t = zltrace.Tracer(zltrace.Config(dir=str(d), flush_ms=10, format=trace_format))
    headers = [
        ("Location", "http://bob:LOCPW@other.example/next"),
        ("Content-Location", "https://bob:CLPW@other.example/doc"),
    ]
    with ScriptedServer([response(302, b"", headers=headers)]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=t)
        pool.request(
            "GET", "/", headers={"Referer": "http://eve:REFPW@ref.example/"}, redirect=False
        )
        pool.close()
    (ex,) = records(t)
    assert ex.response is not None
    location = ex.response.header("Location") or ""
    assert location.startswith("http://bob:redacted-sha256-")
    assert "eve:redacted-sha256-" in (ex.request.header("Referer") or "")
    on_disk = _all_bytes(d)
    for secret in (b"LOCPW", b"CLPW", b"REFPW"):
        assert secret not in on_disk


def test_userinfo_password_kept_out_of_error_texts(tmp_path: Path, trace_format: str) -> None:
    """An exchange that fails records its error without the URL's password."""
    d = tmp_path / "t"
    t = zltrace.Tracer(zltrace.Config(dir=str(d), flush_ms=10, format=trace_format))
    with ScriptedServer([response(200, b"ok")], keep_alive=False) as proxy:
        port = proxy.port
    # The proxy is gone: the connection is refused and urllib3's error quotes the URL.
    pm = urllib3.ProxyManager(f"http://127.0.0.1:{port}", retries=False)
    zltrace.wrap(pm, tracer=t)
    with pytest.raises(urllib3.exceptions.HTTPError):
        pm.request("GET", "http://alice:ERRPW@example.invalid/x")
    pm.clear()
    records(t)
    assert b"ERRPW" not in _all_bytes(d)
