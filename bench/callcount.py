"""Python-level calls on the caller's thread per traced request, by zltrace function.

Deterministic where timings are not: ``cProfile`` counts every call the caller's thread makes
(the worker thread is not profiled) for ``--requests`` keep-alive GETs of a 1 KB body from a
loopback server in a child process. Compare two checkouts by running it with ``PYTHONPATH``
at each; the per-call times are inflated by the profiler and only good for ranking.

    python bench/callcount.py [--requests N] [--bare]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import textwrap

SERVER = textwrap.dedent(
    """
    import socket, threading
    reply = (b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
             b"Content-Length: 1024\\r\\n\\r\\n" + b"x" * 1024)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    print(s.getsockname()[1], flush=True)
    def serve(c):
        buf = b""
        while True:
            data = c.recv(65536)
            if not data:
                return
            buf += data
            while b"\\r\\n\\r\\n" in buf:
                buf = buf.split(b"\\r\\n\\r\\n", 1)[1]
                c.sendall(reply)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--bare", action="store_true", help="count an untraced pool instead")
    args = parser.parse_args()
    os.environ["ZLTRACE_DIR"] = tempfile.mkdtemp(prefix="zltrace-callcount-")
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        import urllib3

        import zltrace

        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1)
        if not args.bare:
            pool = zltrace.wrap(pool)
        for _ in range(200):  # warm: connection made, classes adopted
            _ = pool.request("GET", "/x").data
        n = args.requests
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(n):
            _ = pool.request("GET", "/x").data
        profile.disable()
    finally:
        server.kill()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(v[1] for v in stats.values())
    version = getattr(urllib3, "__version__", "?")
    print(f"zltrace from {os.path.dirname(zltrace.__file__)}, urllib3 {version}")
    print(f"{total / n:.1f} calls per request on the caller's thread, of which zltrace's:")
    for (path, _, name), v in sorted(stats.items()):
        if f"{os.sep}zltrace{os.sep}" in path:
            rel = path.split(f"{os.sep}zltrace{os.sep}", 1)[1]
            print(f"  {v[1] / n:5.2f}  {rel}:{name}")


if __name__ == "__main__":
    main()
