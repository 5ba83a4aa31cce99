"""``BenchServer``: runs the bench's HTTP server (``server.py``) in a child process.

The child never competes with the benchmark process for the GIL. It is started as a script in
isolated mode (no zltrace import, its folder not on ``sys.path``), prints ``PORT <n>`` once
listening, and exits when its stdin closes, so it never outlives the parent.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
from types import TracebackType
from typing import IO, final

from .server import HOST

__all__ = ["BenchServer"]


@final
class BenchServer:
    """Runs the benchmark server in a child process.

    Usage::

        with BenchServer() as server:
            pool = urllib3.HTTPConnectionPool(server.host, server.port)
            pool.request("GET", "/json?size=1024")
    """

    host: str = HOST

    def __init__(self) -> None:
        self.port: int = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if not self.port:
            raise RuntimeError("BenchServer is not started")
        return f"http://{self.host}:{self.port}"

    @staticmethod
    def _command() -> tuple[list[str], dict[str, str] | None]:
        flags = ["--port", "0", "--exit-on-stdin-eof"]
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.py")
        if os.path.isfile(path):
            # Run the file itself in isolated mode: the child needs no zltrace import (no
            # package side effects) and its directory is not put on sys.path.
            return [sys.executable, "-I", path, *flags], None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        return [sys.executable, "-m", f"{__package__}.server", *flags], env

    def start(self, timeout: float = 10.0) -> None:
        """Launch the child process and wait until it reports its port."""
        if self._proc is not None:
            raise RuntimeError("BenchServer is already started")
        command, env = self._command()
        # Lives until stop(): the child's stderr, shown if it fails to start.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self._proc = proc
        lines: list[bytes] = []

        def read_port_line() -> None:
            if proc.stdout is not None:
                with contextlib.suppress(OSError, ValueError):
                    lines.append(proc.stdout.readline())

        reader = threading.Thread(target=read_port_line, name="benchserver-port", daemon=True)
        reader.start()
        reader.join(timeout)
        line = lines[0] if lines else b""
        words = line.split()
        if len(words) == 2 and words[0] == b"PORT" and words[1].isdigit():
            self.port = int(words[1])
            return
        detail = "timed out" if reader.is_alive() else f"got {line!r}"
        stderr = self._read_stderr()
        self.stop()
        message = f"bench server failed to start ({detail})"
        raise RuntimeError(f"{message}:\n{stderr}" if stderr else message)

    def _read_stderr(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        """Terminate the child process (SIGTERM, then kill after 5 s) and wait for it."""
        proc, self._proc = self._proc, None
        self.port = 0
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> BenchServer:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
