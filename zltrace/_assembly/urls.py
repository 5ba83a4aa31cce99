"""The absolute URL of a request, from the pool's scheme, host and port and the target sent."""

from __future__ import annotations

__all__ = ["url_of"]


def url_of(scheme: str, host: str, port: int | None, target: str) -> str:
    """``scheme://host[:port]target``; an absolute-form target (to a proxy) as it is."""
    if target.startswith(("http://", "https://")):
        return target
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    shown = "" if port in (None, default) else f":{port}"
    return f"{scheme}://{host}{shown}{target}"
