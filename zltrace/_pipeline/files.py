"""The writer's files: appended to through the opener seam, re-created when removed under us.

Rules:
- Every file is opened through the tracer's opener (``os.open``'s signature), append-only,
  mode 0600, in a directory created 0700 when missing.
- A file removed under the writer (its directory deleted, log rotation) is noticed by
  ``st_nlink == 0`` before each use and opened anew, rather than written into a deleted inode.
- The trace file only ever gains whole lines: a write that fails half-way is cut back
  (``ftruncate``) to the last whole line, so a retry never glues a torn line to a good one.
- Side-file offsets always match the file: after a failed append the offset is re-read.
- The fallback directory (outside the trace directory, often under a shared temp dir) is
  used only while it is a real directory owned by us that no one else may enter: created
  0700 when missing, refused otherwise, never chmod-ed or followed through a symlink.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from typing import Callable, Union

Buffer = Union[bytes, memoryview]
Opener = Callable[[str, int, int], int]

_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND
_IOV_MAX = 1024
_COPY_BLOCK = 1 << 20


def write_all(fd: int, buffers: Sequence[Buffer]) -> int:
    """``os.writev`` every buffer completely (partial writes resumed); returns bytes written."""
    total = 0
    pending = [memoryview(b) for b in buffers if len(b)]
    while pending:
        batch = pending[:_IOV_MAX]
        n = os.writev(fd, batch)
        total += n
        # Drop what was written; resume inside a buffer written only in part.
        i = 0
        while i < len(batch) and n >= len(batch[i]):
            n -= len(batch[i])
            i += 1
        rest = pending[i:]
        if n and rest:
            rest[0] = rest[0][n:]
        pending = rest
    return total


def cut_back(fd: int, size: int) -> bool:
    """Remove the torn end of a failed append; False if a torn end may remain."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return True  # a device or pipe: nothing to cut, and nothing kept either
        if st.st_size > size:
            os.ftruncate(fd, size)
    except OSError:
        return False
    return True


def _close(fd: int | None, sync: bool = False) -> None:
    if fd is None:
        return
    if sync:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    with contextlib.suppress(OSError):
        os.close(fd)


def private_dir(path: str) -> None:
    """Make sure ``path`` is a directory only we may use (created 0700 if missing).

    Raises ``OSError`` when it cannot be created, or exists but is a symlink, someone
    else's, or open to group or others.
    """
    try:
        os.makedirs(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory (a symlink is refused)", path)
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise OSError(errno.EPERM, f"owned by uid {st.st_uid}, not by us", path)
    if st.st_mode & 0o077:
        raise OSError(
            errno.EPERM, f"mode {st.st_mode & 0o777:o} lets others in (0700 needed)", path
        )


class AppendFile:
    """One file opened for appending on first use; ``end`` is where our data ends in it."""

    def __init__(
        self, path: str, opener: Opener, on_recreated: Callable[[str], None] | None = None
    ) -> None:
        self.path = path
        self._opener = opener
        self._on_recreated = on_recreated
        self.fd: int | None = None
        self.end = 0

    def open(self) -> int:
        """The descriptor, opened now if needed (anew if the file was removed under us)."""
        fd = self.fd
        if fd is not None and os.fstat(fd).st_nlink == 0:
            self.drop()
            fd = None
            if self._on_recreated is not None:
                self._on_recreated(self.path)
        if fd is None:
            directory = os.path.dirname(self.path)
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = self._opener(self.path, _APPEND, 0o600)
            self.end = os.fstat(fd).st_size
            self.fd = fd
        return fd

    def drop(self) -> None:
        """Close without syncing (a broken descriptor, or a forked child leaving the file)."""
        _close(self.fd)
        self.fd = None

    def close(self) -> None:
        """fsync and close."""
        _close(self.fd, sync=True)
        self.fd = None


class TraceFile(AppendFile):
    """The trace: whole lines only."""

    def __init__(
        self, path: str, opener: Opener, on_recreated: Callable[[str], None] | None = None
    ) -> None:
        super().__init__(path, opener, on_recreated)
        self._torn = False  # a failed append left part of a line that could not be cut

    def append(self, lines: Sequence[bytes]) -> None:
        """Append whole lines, or leave the file as it was (cut back on failure)."""
        fd = self.open()
        if self._torn:
            # A torn end that could not be cut back: end it, so it is one bad line of its
            # own (the reader skips it with a warning) and not glued to the next good one.
            self.end += write_all(fd, [b"\n"])
            self._torn = False
        # One joined buffer rather than one iovec per line: the join is cheap next to the
        # per-iovec cost of a long writev.
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        try:
            self.end += write_all(fd, [data])
        except OSError:
            self._torn = not cut_back(fd, self.end)
            # Reopen for the next attempt: the descriptor itself may be what is broken (a
            # file on a filesystem that was remounted or went away).
            self.drop()
            raise


class SideFile(AppendFile):
    """The side file of raw bytes that lines point into by offset."""

    def append(self, buffers: Sequence[Buffer]) -> int:
        """Append ``buffers``; return the offset where they start."""
        fd = self.open()
        offset = self.end
        try:
            n = write_all(fd, buffers)
        except OSError:
            # Part of the data may be there; re-sync our offset with the file.
            self.end = os.fstat(fd).st_size
            raise
        self.end += n
        return offset


class DeadLetterFile:
    """Lines the trace could not take, kept in the trace's format until they are copied back.

    Opened for each batch and closed again: it is a path of last resort, used rarely. With
    ``private``, its directory is checked (see :func:`private_dir`) before each use.
    """

    def __init__(self, path: str, opener: Opener, private: bool = False) -> None:
        self.path = path
        self._opener = opener
        self._private = private
        self.records = 0  # records in the file, not yet copied into the trace
        self._copied = 0  # bytes of the file already copied into the trace

    def append(self, lines: Sequence[bytes], records: int) -> None:
        """Append whole lines (``records`` of them), or leave the file as it was."""
        if self._private:
            private_dir(os.path.dirname(self.path))
        fd = self._opener(self.path, _APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            try:
                write_all(fd, lines)
            except OSError:
                cut_back(fd, size)
                raise
        finally:
            os.close(fd)
        self.records += records

    def copy_to(self, trace: TraceFile, copied: Callable[[int], None]) -> None:
        """Copy every line into ``trace`` (``copied(n)`` after each block), then remove this file.

        Whole lines only, and from where the last attempt stopped: a copy that fails
        half-way neither leaves a torn line in the trace nor copies the first half twice.
        """
        fd = os.open(self.path, os.O_RDONLY)
        try:
            carry = b""
            while True:
                block = os.pread(fd, _COPY_BLOCK, self._copied + len(carry))
                if not block:
                    break
                data = carry + block
                cut = data.rfind(b"\n") + 1
                if cut:
                    trace.append([data[:cut]])
                    self._copied += cut
                    copied(cut)
                carry = data[cut:]
        finally:
            os.close(fd)
        # Every line is in the trace now. A crash between the copy and the unlink leaves the
        # lines in both files; ``zltrace.read`` yields each of those ids once.
        try:
            os.unlink(self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.truncate(self.path, 0)
        self._copied = 0
