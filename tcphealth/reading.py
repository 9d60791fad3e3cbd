"""Read an input file, or standard input, as it comes or whole -- but never more than a stated
limit.

Files come from strangers: a sparse 2 GB file, ``/dev/zero``, a named pipe nobody writes to, a
directory. The size of a regular file is checked before a byte is read; anything whose size is
not known in advance (standard input, a pipe, a device) is read in chunks and refused as soon
as it passes the limit. An input is looked at before it is read (:func:`open_input`: its first
64 KiB, kept where they cannot be read again) so that a reader can choose the limit and read
the rest as it comes, never holding it whole. A named pipe is opened without waiting for a
writer, so one with no writer reads as empty instead of hanging. Every failure is an
:class:`InputError` naming the input."""

from __future__ import annotations

import io
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tcphealth.errors import InputError

CHUNK = 1 << 20
# What is looked at to choose the limit (a snapshot or text) before the rest is read.
HEAD = 64 << 10


@dataclass(frozen=True)
class Limit:
    """The most bytes an input may hold, and what it is called in the refusal."""

    size: int
    what: str  # "a snapshot", "pasted text"

    def refusal(self, where: str, size: int | None) -> InputError:
        """``size`` is the input's size where known beforehand (a regular file)."""
        limit = f"the {_human(self.size)} limit for {self.what} ({self.size:,} bytes)"
        if size is None:
            return InputError(where, f"over {limit}; stopped reading there")
        return InputError(where, f"{size:,} bytes ({_human(size)}) is over {limit}; not read")


LimitChoice = Limit | Callable[[bytes], Limit]


@dataclass(frozen=True)
class Input:
    data: bytes
    taken_at: float  # the file's modification time, or now for a stream


def where_of(path: Path | str) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def read_input(
    path: Path | str, stdin: IO[str] | None, limit: LimitChoice, *, allow_empty: bool = False
) -> Input:
    """The bytes of ``path`` (``-``: ``stdin``, else the process's standard input).

    ``limit`` is a :class:`Limit`, or a function that chooses one from the first bytes (a
    snapshot may be larger than pasted text). Raises :class:`InputError` for an input that is
    missing, unreadable, a directory, over the limit, or (unless ``allow_empty``) empty."""
    where = where_of(path)
    if str(path) == "-":
        data = _read_stream(stdin if stdin is not None else sys.stdin, where, limit)
        taken_at = time.time()
    else:
        data, taken_at = _read_path(path, where, limit)
    if not data.strip() and not allow_empty:
        problem = "empty (0 bytes)" if not data else f"only blank space ({len(data):,} bytes)"
        raise InputError(where, f"{problem}: nothing to read")
    return Input(data, taken_at)


def iter_input(path: Path | str, stdin: IO[str] | None, limit: Limit) -> Iterator[bytes]:
    """The bytes of ``path`` as :func:`read_input` reads them, refused for the same reasons,
    but given a chunk at a time: a reader that decodes as it goes never holds the whole input.
    (An input over the limit or empty is refused when the reading reaches that point.)"""
    with open_input(path, stdin) as opened:
        yield from opened.chunks(limit)


class Opened:
    """An input opened for reading as it comes, whose first bytes (:attr:`head`, at most
    :data:`HEAD`) can be looked at first -- to tell a snapshot from a paste, and so choose the
    limit -- without reading it whole. A regular file's head is read in place and its bytes
    are then read from the start; the head of a stream (standard input, a pipe, a device),
    which cannot be read twice, is kept and given first. Use it as a context manager."""

    def __init__(
        self,
        where: str,
        read: Callable[[int], bytes],
        close: Callable[[], None],
        *,
        size: int | None,
        taken_at: float,
        head: bytes,
        replay: bool,
    ) -> None:
        self.where = where
        self.size = size  # a regular file's size, known beforehand; None for a stream
        self.taken_at = taken_at  # the file's modification time, or now for a stream
        self.head = head
        self._read = read
        self._close = close
        self._replay = head if replay else b""

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *_: object) -> None:
        self._close()

    def chunks(self, limit: Limit) -> Iterator[bytes]:
        """The input's bytes in order, a chunk at a time, refused (an :class:`InputError`
        naming it) past ``limit`` -- a regular file by its size, before a byte is read -- or
        when it is empty or only blank space, once the reading gets there."""
        if self.size is not None and self.size > limit.size:
            raise limit.refusal(self.where, self.size)
        total = 0
        blank = True
        chunk, self._replay = self._replay, b""
        try:
            while True:
                if not chunk:
                    chunk = self._read(CHUNK)
                    if not chunk:
                        break
                total += len(chunk)
                if total > limit.size:
                    raise limit.refusal(self.where, None)
                blank = blank and not chunk.strip()
                yield chunk
                chunk = b""
        except OSError as error:
            raise InputError(self.where, error.strerror or str(error)) from None
        if blank:
            problem = "empty (0 bytes)" if not total else f"only blank space ({total:,} bytes)"
            raise InputError(self.where, f"{problem}: nothing to read")


def open_input(path: Path | str, stdin: IO[str] | None) -> Opened:
    """``path`` (``-``: ``stdin``, else the process's standard input) opened, its head read.
    Raises :class:`InputError` for an input that is missing, unreadable or a directory."""
    where = where_of(path)
    if str(path) == "-":
        stream = stdin if stdin is not None else sys.stdin
        binary: IO[bytes] | None = getattr(stream, "buffer", None)
        if binary is None:
            # A text stream with no bytes below it (io.StringIO in tests): already in memory.
            binary = io.BytesIO(stream.read().encode("utf-8", "surrogateescape"))
        read = binary.read
        try:
            head = _read_head(read)
        except OSError as error:
            raise InputError(where, error.strerror or str(error)) from None
        return Opened(
            where, read, lambda: None, size=None, taken_at=time.time(), head=head, replay=True
        )
    fd = _open(path, where)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            head = os.pread(fd, HEAD, 0)
            size: int | None = info.st_size
            taken_at = info.st_mtime
        else:  # a named pipe or a device: read once, as standard input is
            head = _read_head(lambda size: os.read(fd, size))
            size = None
            taken_at = time.time()
    except OSError as error:
        os.close(fd)
        raise InputError(where, error.strerror or str(error)) from None
    return Opened(
        where,
        lambda size: os.read(fd, size),
        lambda: os.close(fd),
        size=size,
        taken_at=taken_at,
        head=head,
        replay=size is None,
    )


def _read_head(read: Callable[[int], bytes]) -> bytes:
    """Up to :data:`HEAD` bytes of a stream: fewer only where it ends before (a pipe's read
    may return less than asked while more is coming)."""
    parts: list[bytes] = []
    held = 0
    while held < HEAD:
        chunk = read(HEAD - held)
        if not chunk:
            break
        parts.append(chunk)
        held += len(chunk)
    return b"".join(parts)


def _open(path: Path | str, where: str) -> int:
    """A descriptor for reading ``path``: not a directory, blocking reads."""
    try:
        # O_NONBLOCK: opening a named pipe must not wait for a writer that may never come.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise InputError(where, error.strerror or str(error)) from None
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise InputError(where, "a directory, not a file")
        # From here on, reads may block as usual: a pipe with a writer is waited for.
        os.set_blocking(fd, True)
    except OSError as error:
        os.close(fd)
        raise InputError(where, error.strerror or str(error)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _choose(limit: LimitChoice, head: bytes) -> Limit:
    return limit if isinstance(limit, Limit) else limit(head)


def _read_stream(stream: IO[str], where: str, limit: LimitChoice) -> bytes:
    binary: IO[bytes] | None = getattr(stream, "buffer", None)
    if binary is None:  # a text stream without bytes below it (io.StringIO in tests)
        head_text = stream.read(HEAD)
        chosen = _choose(limit, head_text.encode("utf-8", "surrogateescape"))
        rest = stream.read(chosen.size + 1 - len(head_text))
        data = (head_text + rest).encode("utf-8", "surrogateescape")
        if len(data) > chosen.size:
            raise chosen.refusal(where, None)
        return data
    return _read_chunks(binary.read, where, limit)


def _read_chunks(read: Callable[[int], bytes], where: str, limit: LimitChoice) -> bytes:
    """Read until the end, refusing as soon as the total passes the limit."""
    parts: list[bytes] = []
    total = 0
    chosen: Limit | None = None
    while True:
        chunk = read(CHUNK)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        total += len(chunk)
        if chosen is None:
            chosen = _choose(limit, b"".join(parts)[:HEAD])
        if total > chosen.size:
            raise chosen.refusal(where, None)


def _read_path(path: Path | str, where: str, limit: LimitChoice) -> tuple[bytes, float]:
    fd = _open(path, where)
    try:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            head = os.pread(fd, HEAD, 0)
            chosen = _choose(limit, head)
            if info.st_size > chosen.size:  # refused before reading it
                raise chosen.refusal(where, info.st_size)
            # Read at most one byte more than allowed: the file may be growing meanwhile.
            data = _read_chunks(lambda size: os.read(fd, size), where, chosen)
            return data, info.st_mtime
        return _read_chunks(lambda size: os.read(fd, size), where, limit), time.time()
    except OSError as error:
        raise InputError(where, error.strerror or str(error)) from None
    finally:
        os.close(fd)


def _human(size: int) -> str:
    """``256 MiB``, ``1 GiB``."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} TiB"
