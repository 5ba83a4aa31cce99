"""Reading a large raw event log stays flat in memory.

    python bench/read_flat.py [--mib 1000]

Records ``--mib`` exchanges of 1 MiB random bodies into a raw log (``format="raw"``), then in a
fresh interpreter iterates ``zltrace.read()`` over it, reading every body once
(``len(ex.response.raw_body)``), and prints the time and the process's VmRSS / VmHWM (peak)
before and after. The trace file is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import urllib3

import zltrace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.server import ScriptedServer, response

READER = """
import sys, time, zltrace
def mem():
    return " ".join(l.split()[0] + l.split()[1] for l in open("/proc/self/status")
                    if l.startswith(("VmHWM", "VmRSS")))
before = mem()
t0 = time.monotonic(); n = total = 0
for ex in zltrace.read(sys.argv[1]):
    n += 1
    total += len(ex.response.raw_body)
print(f"read {n} exchanges, {total >> 20} MiB of bodies in {time.monotonic() - t0:.2f} s; "
      f"before: {before} kB; after: {mem()} kB")
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1000)
    n = ap.parse_args().mib
    d = tempfile.mkdtemp()
    body = os.urandom(1 << 20)
    t = zltrace.Tracer(zltrace.Config(dir=d, format="raw", handle_signals=False))
    with ScriptedServer([response(200, body)]) as srv:
        pool = t.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        for i in range(n):
            assert pool.request("GET", f"/b/{i}").data == body
        pool.close()
    assert t.close(timeout=120)
    print(f"trace {os.path.getsize(t.path) >> 20} MiB")
    try:
        subprocess.run([sys.executable, "-c", READER, t.path], check=True)
    finally:
        os.remove(t.path)
        os.rmdir(d)


if __name__ == "__main__":
    main()
