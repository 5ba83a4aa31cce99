"""The writer's files: appended to through the opener seam, re-created when removed under us.

Rules:
- Every file is opened through the tracer's opener (``os.open``'s signature), append-only,
  mode 0600, in a directory created 0700 when missing (each missing parent too, whatever
  the umask).
- A file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a file or symlink someone else
  put at the (predictable) name is never written through; the open fails instead. Reopening
  our own file (after a failed write) uses ``O_NOFOLLOW`` and checks it is still the same
  inode; a file swapped in under the name is refused.
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
from typing import Any, Callable, Union

from .._format import ALL_SUFFIXES
from .._format_raw import whole_records

Buffer = Union[bytes, memoryview]
Opener = Callable[[str, int, int], int]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_REOPEN = os.O_WRONLY | os.O_APPEND | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_CREATE = _REOPEN | os.O_CREAT | os.O_EXCL
#: Stems tried (``<stem>``, ``<stem>-1``, ...) before giving up on names already taken.
CLAIM_TRIES = 100
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


def make_dirs(path: str) -> None:
    """Create ``path`` and its missing parents, each 0700 whatever the umask (``os.makedirs``
    creates the parents with the umask's default, 0777 under umask 0)."""
    parent = os.path.dirname(path)
    if parent and parent != path and not os.path.isdir(parent):
        make_dirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass


#: What :func:`private_dir` refuses in a directory's mode: the fallback directory must be
#: closed to everyone else; the trace directory only must not be writable by them.
CLOSED = 0o077
NOT_WRITABLE = 0o022


def private_dir(path: str, refuse: int = CLOSED) -> None:
    """Make sure ``path`` is a directory we own that others may not use (created 0700 if
    missing); ``refuse``: the mode bits it must not have.

    Raises ``OSError`` when it cannot be created, or exists but is a symlink, not a
    directory, someone else's, or has a bit of ``refuse`` set.
    """
    make_dirs(path)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory (a symlink is refused)", path)
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise OSError(errno.EPERM, f"owned by uid {st.st_uid}, not by us", path)
    if st.st_mode & refuse:
        what = "lets others in" if refuse == CLOSED else "lets others write"
        raise OSError(errno.EPERM, f"mode {st.st_mode & 0o777:o} {what} (0700 expected)", path)


Ident = tuple[int, int]


def open_ours(path: str, opener: Opener, ident: Ident | None) -> tuple[int, Ident]:
    """Open our file ``path`` for appending: created (``O_EXCL``, never through a symlink)
    unless ``ident`` says we created it already; then reopened, and refused with ``EEXIST``
    if the name now holds another file."""
    if ident is not None:
        try:
            fd = opener(path, _REOPEN, 0o600)
        except FileNotFoundError:
            pass  # removed: create it anew
        else:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == ident:
                return fd, ident
            os.close(fd)
            raise OSError(errno.EEXIST, "replaced by a file zltrace did not create", path)
    fd = opener(path, _CREATE, 0o600)
    st = os.fstat(fd)
    return fd, (st.st_dev, st.st_ino)


def claim_names(
    directory: str,
    stem: str,
    fallback: str | None,
    dir_name: str,
    warn: Callable[[str, str], None],
    report: Any,
) -> tuple[str, str]:
    """The directory and stem to write to: ``directory`` if it is ours and closed to others'
    writes (else ``fallback``, checked as :func:`private_dir`), and the first stem whose
    trace, side and dead-letter names are all free. ``warn(key, message)`` is told why, and
    ``report.dir_problem`` set while the directory is refused. Raises ``OSError``."""
    try:
        private_dir(directory, NOT_WRITABLE)
        report.dir_problem = None
    except OSError as exc:
        report.dir_problem = f"{dir_name}={directory!r} cannot be used: {exc.strerror or exc}"
        if fallback is None:
            warn("dir", f"zltrace: {report.dir_problem}; nothing can be written")
            raise
        try:
            private_dir(fallback)
        except OSError as exc2:
            warn(
                "dir",
                f"zltrace: {report.dir_problem}, nor can the fallback directory "
                f"{fallback!r} ({exc2.strerror or exc2}); records are held and retried",
            )
            raise
        warn("dir", f"zltrace: {report.dir_problem}; writing the trace to {fallback!r} instead")
        directory = fallback
    for k in range(CLAIM_TRIES):
        name = stem if k == 0 else f"{stem}-{k}"
        base = os.path.join(directory, name)
        taken = [base + suffix for suffix in ALL_SUFFIXES if os.path.lexists(base + suffix)]
        if not taken:
            return directory, name
        if k == 0:
            warn(
                "name",
                f"zltrace: {taken[0]!r} already exists (a file or symlink zltrace did not "
                "create); it is left alone and the trace goes to the next free name",
            )
    raise OSError(errno.EEXIST, "no free trace file name", os.path.join(directory, stem))


def whole_lines(data: bytes) -> int:
    """How many bytes of ``data`` are whole trace lines."""
    return data.rfind(b"\n") + 1


class AppendFile:
    """One file opened for appending on first use; ``end`` is where our data ends in it.

    ``header``: what a new (empty) file starts with, written when it is created (a raw log's
    preamble and FILE record); a file re-created after a removal starts with it again.
    """

    def __init__(
        self,
        path: str,
        opener: Opener,
        on_recreated: Callable[[str], None] | None = None,
        header: bytes = b"",
    ) -> None:
        self.path = path
        self.header = header
        self._opener = opener
        self._on_recreated = on_recreated
        self.fd: int | None = None
        self.ident: Ident | None = None  # the file we created, once we have
        self.end = 0

    def open(self) -> int:
        """The descriptor, opened now if needed (anew if the file was removed under us)."""
        fd = self.fd
        if fd is not None and os.fstat(fd).st_nlink == 0:
            self.drop()
            fd = self.ident = None
            if self._on_recreated is not None:
                self._on_recreated(self.path)
        if fd is None:
            directory = os.path.dirname(self.path)
            if not os.path.isdir(directory):
                make_dirs(directory)
            fd, self.ident = open_ours(self.path, self._opener, self.ident)
            self.end = os.fstat(fd).st_size
            if self.end == 0 and self.header:
                try:
                    self.end = write_all(fd, [self.header])
                except OSError:
                    cut_back(fd, 0)
                    _close(fd)
                    raise
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
        self,
        path: str,
        opener: Opener,
        on_recreated: Callable[[str], None] | None = None,
        header: bytes = b"",
    ) -> None:
        super().__init__(path, opener, on_recreated, header)
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

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset``, read back through a descriptor of its own (ours is
        append-only); ``OSError`` if the name now holds another file or fewer bytes."""
        fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self.ident:
                raise OSError(errno.EEXIST, "replaced by a file zltrace did not create", self.path)
            data = b""
            while len(data) < size:
                more = os.pread(fd, size - len(data), offset + len(data))
                if not more:
                    raise OSError(errno.EIO, f"{len(data)} of {size} bytes at {offset}", self.path)
                data += more
            return data
        finally:
            os.close(fd)


class DeadLetterFile:
    """Lines the trace could not take, kept in the trace's format until they are copied back.

    Opened for each batch and closed again: it is a path of last resort, used rarely. With
    ``private``, its directory is checked (see :func:`private_dir`) before each use. A raw
    log's dead-letter file starts with the same ``header`` as its trace (not copied back).
    """

    def __init__(
        self, path: str, opener: Opener, private: bool = False, header: bytes = b""
    ) -> None:
        self.path = path
        self.header = header
        #: How many bytes of a block are whole units (lines, or raw records).
        self._whole = whole_records if header else whole_lines
        self._opener = opener
        self._private = private
        self.records = 0  # records in the file, not yet copied into the trace
        self.ident: Ident | None = None  # the file we created, while it is there
        self._copied = 0  # bytes of the file already copied into the trace

    def append(self, lines: Sequence[bytes], records: int) -> None:
        """Append whole lines (``records`` of them), or leave the file as it was."""
        if self._private:
            private_dir(os.path.dirname(self.path))
        fd, self.ident = open_ours(self.path, self._opener, self.ident)
        try:
            size = os.fstat(fd).st_size
            try:
                write_all(fd, [self.header, *lines] if size == 0 and self.header else lines)
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
        fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW)
        base = len(self.header)
        try:
            carry = b""
            while True:
                block = os.pread(fd, _COPY_BLOCK, base + self._copied + len(carry))
                if not block:
                    break
                data = carry + block
                cut = self._whole(data)
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
            self.ident = None
        except OSError:
            with contextlib.suppress(OSError):
                os.truncate(self.path, 0)
        self._copied = 0
