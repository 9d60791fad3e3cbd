"""A netlink dump received by a child process and passed on through a pipe, while this one
decodes what came before.

The kernel builds a sock_diag dump inside the reader's ``recv`` calls, about 32 KiB at a time:
at 300,000 sockets that is 0.5 s of kernel time, 0.13 s at 100,000. Received here, it adds to
the decoding, which is all Python. A forked child that only receives and forwards the bytes
takes that time to the other core: the kernel fills the next buffers while this process
decodes the last ones. The pipe costs a copy of the bytes, a few ms per 100,000 sockets.

What the child forwards is the kernel's reply as it came, whole netlink messages only; it
checks nothing but where each dump ends (``NLMSG_DONE`` or an error message, or a message
too broken to walk past), and leaves reading and judging the messages to the decoder here.

On the pipe, every frame is a :data:`_FRAME` header -- the number of the request it answers,
its kind, the length of what follows -- and then that many bytes:

- ``_DATA``: netlink messages, one or more whole datagrams;
- ``_END``: that request's dump is over, nothing follows;
- ``_FAILED``: receiving it failed: errno (0 for none) and a text saying what happened.

When the child cannot run (no ``fork``, other threads running), or the process asked for
the dump to be received in place (:func:`received_in_place`), :func:`started` gives ``None``
and the caller receives in this process. A child that stops without finishing
shows as :class:`RelayLost`, on which the caller does the same.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterator, Sequence

from tcphealth.sources import children

NETLINK_SOCK_DIAG = 4
NLMSG_ERROR = 2
NLMSG_DONE = 3
_NLMSGHDR_SIZE = 16
NLMSGHDR_HEAD = struct.Struct("=IH")  # a netlink message's length and type

_FRAME = struct.Struct("=IBxxI")  # request number, kind, length of the bytes that follow
_DATA, _END, _FAILED = 0, 1, 2
_ERRNO = struct.Struct("=i")

# Datagrams gathered before one write: large enough that this process makes few reads, small
# enough that it starts decoding within a few ms of the first datagram.
_BATCH = 1 << 19
_PIPE_SIZE = 1 << 20  # fewer, larger reads here; refused without harm where not allowed


_relay_wanted = True


def received_in_place() -> None:
    """From now on, every dump is received by the process that decodes it, with no child.

    For a process judged by the CPU a collection costs rather than by how soon it ends
    (``tcphealth serve``, scraped every 15-30 s): the child gains wall time only on a spare
    core, and costs CPU of its own -- its fork, and every byte of the dump gathered, written
    into the pipe and read out of it once more (measured in benchmarks/RESULTS.md)."""
    global _relay_wanted
    _relay_wanted = False


def relay_wanted() -> bool:
    """Whether :func:`started` starts a child where one can run."""
    return _relay_wanted


class RelayLost(Exception):
    """The child stopped before the dumps were over: receive them here instead."""


class ReceiveFailed(Exception):
    """The child could not receive a dump: ``errno`` (0 when there is none) and what
    happened, for the caller to report as it would had it received the dump itself."""

    def __init__(self, errno: int, text: str) -> None:
        super().__init__(errno, text)
        self.errno = errno
        self.text = text


class Relay:
    """The child receiving the dumps, and the pipe it writes them to."""

    def __init__(self, pid: int, read_end: int, buffer_size: int) -> None:
        self.pid: int | None = pid
        self._pipe = os.fdopen(read_end, "rb", buffering=0)
        self._buffer = bytearray(_BATCH + buffer_size)  # the largest frame the child writes
        self._view = memoryview(self._buffer)
        self._header = bytearray(_FRAME.size)

    def dump(self, number: int) -> Iterator[memoryview]:
        """The messages of request ``number``'s dump, in the order received; each chunk is
        valid until the next is asked for. Requests are read in the order they were made;
        what is left of an earlier one is skipped."""
        while True:
            request, kind, length = self._next_frame()
            if request < number:
                continue
            if request > number:
                raise RelayLost(f"answer to request {request} before {number} ended")
            if kind == _DATA:
                yield self._view[:length]
            elif kind == _END:
                return
            elif kind == _FAILED and length >= _ERRNO.size:
                (errno,) = _ERRNO.unpack_from(self._buffer, 0)
                text = bytes(self._view[_ERRNO.size : length]).decode("utf-8", "replace")
                raise ReceiveFailed(errno, text)
            else:
                raise RelayLost(f"frame of unknown kind {kind}")

    def _next_frame(self) -> tuple[int, int, int]:
        if not self._fill(memoryview(self._header)):
            raise RelayLost("the child ended before the dumps did")
        request, kind, length = _FRAME.unpack(self._header)
        if length > len(self._buffer):
            raise RelayLost(f"frame of {length} bytes, longer than any the child writes")
        if not self._fill(self._view[:length]):
            raise RelayLost("the child ended inside a frame")
        return request, kind, length

    def _fill(self, target: memoryview) -> bool:
        """Read exactly ``len(target)`` bytes; False at end of file before that."""
        got = 0
        while got < len(target):
            size = self._pipe.readinto(target[got:])
            if not size:
                return False
            got += size
        return True

    def close(self) -> None:
        """Stop the child (by its pid) if it still runs, and reap it."""
        self._pipe.close()
        if self.pid is not None:
            children.stop(self.pid)
            self.pid = None


@contextlib.contextmanager
def started(
    requests: Sequence[bytes], *, buffer_size: int, timeout: float
) -> Iterator[Relay | None]:
    """A child sending each of ``requests`` in turn on its own NETLINK_SOCK_DIAG socket and
    relaying the replies; ``None`` when no child can be started here. The child is gone when
    the block ends."""
    relay = _start(requests, buffer_size, timeout)
    try:
        yield relay
    finally:
        if relay is not None:
            relay.close()


def _start(requests: Sequence[bytes], buffer_size: int, timeout: float) -> Relay | None:
    if not _relay_wanted or not children.can_fork():
        return None
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError, AttributeError):  # F_SETPIPE_SZ: Linux, Python 3.10+
        import fcntl

        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:  # the child: relay, and leave without running any cleanup of ours
        _child(requests, write_end, buffer_size, timeout)
    os.close(write_end)
    return Relay(pid, read_end, buffer_size)


def receive(
    channel: socket.socket, request: bytes, buffer_size: int, timeout: float
) -> Iterator[memoryview]:
    """Send ``request`` on the NETLINK_SOCK_DIAG ``channel`` and give each datagram of the
    reply as it comes, each valid until the next; the caller stops at the dump's end. A reply
    that stops coming for ``timeout`` seconds, or a closed channel, is :class:`ReceiveFailed`.
    The one receiving loop: the child's, and the caller's when there is no child."""
    channel.settimeout(timeout)
    channel.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_size)
    channel.sendto(request, (0, 0))
    buffer = bytearray(buffer_size)
    view = memoryview(buffer)
    while True:
        try:
            size = channel.recv_into(buffer)
        except TimeoutError:
            raise ReceiveFailed(0, f"no end of dump after {timeout} s") from None
        if size == 0:
            raise ReceiveFailed(0, "the kernel closed the channel before the dump ended")
        yield view[:size]


def dump_ended(data: memoryview) -> bool:
    """Whether this datagram ends a dump: it holds NLMSG_DONE or an error message, or a
    message too broken to walk past (the decoder then says what is wrong with it)."""
    offset = 0
    end = len(data)
    header = NLMSGHDR_HEAD.unpack_from
    while offset + _NLMSGHDR_SIZE <= end:
        length, kind = header(data, offset)
        if kind in (NLMSG_DONE, NLMSG_ERROR) or length < _NLMSGHDR_SIZE:
            return True
        offset += (length + 3) & ~3
    return offset != end  # stray bytes after the last message


def _child(requests: Sequence[bytes], write_end: int, buffer_size: int, timeout: float) -> None:
    code = 1
    try:
        # Copies of every descriptor of the parent, which holds its sockets: not ours to hold.
        os.closerange(0, write_end)
        os.closerange(write_end + 1, 1 << 20)
        out = os.fdopen(write_end, "wb", buffering=0)

        def send(number: int, kind: int, payload: bytes | bytearray | memoryview) -> None:
            _write_all(out.fileno(), _FRAME.pack(number, kind, len(payload)))
            _write_all(out.fileno(), payload)

        for number, request in enumerate(requests):
            # A failed request is reported and the next one still made: the caller decides
            # which failures end the run (a kernel without IPv6 does not).
            batch = bytearray()
            try:
                with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as chan:
                    for datagram in receive(chan, request, buffer_size, timeout):
                        batch += datagram
                        ended = dump_ended(datagram)
                        if ended or len(batch) >= _BATCH:
                            send(number, _DATA, batch)
                            batch = bytearray()
                        if ended:
                            break
                send(number, _END, b"")
            except ReceiveFailed as failure:
                send(number, _FAILED, _ERRNO.pack(failure.errno) + failure.text.encode())
            except OSError as error:
                text = error.strerror or str(error)
                send(number, _FAILED, _ERRNO.pack(error.errno or 0) + text.encode())
        out.close()
        code = 0
    except BaseException:  # anything at all: the parent, seeing no end, receives by itself
        code = 1
    finally:
        # _exit: no atexit handlers, no flushing of the stdio buffers copied from the parent.
        os._exit(code)


def _write_all(descriptor: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]
