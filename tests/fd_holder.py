"""A process holding loopback connections that a test tells, line by line on stdin, to open,
close or swap some: the other end of ``fd_cache``'s tests and of serve's live test.

    python tests/fd_holder.py NAME    # NAME becomes the process name (/proc/PID/comm)

Commands (one per line; each answered with one line ``OK FDS INODE...``: the number of open
descriptors, then the inodes of every socket held):

- ``open N``: N new connections to its own listener, both ends kept (2N ESTABLISHED);
- ``close N``: close the client end of N connections (the server end goes to CLOSE_WAIT,
  still held; the client end to FIN_WAIT2, held by nobody);
- ``swap``: close both ends of one connection and open a new one: as many descriptors as
  before, two sockets new;
- ``swapout PORT``: close both ends of one connection and make two to 127.0.0.1:PORT (held
  open; the test accepts them): as many descriptors as before, two client sockets new;
- ``file``: close both ends of one connection and open two files in their place;
- ``quit`` (or end of input): close everything and exit.

It exits by itself after 120 s without a command, so a failed test cannot leave it behind.
Tests start it with :func:`holder`.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def main() -> None:
    with open("/proc/self/comm", "w") as comm:
        comm.write(sys.argv[1][:15])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    pairs: list[tuple[socket.socket, socket.socket]] = []
    dialled: list[socket.socket] = []  # connections out, to a test's listener
    half_closed: list[socket.socket] = []  # server ends whose client closed
    files: list[int] = []

    def connect() -> None:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        server, _ = listener.accept()
        pairs.append((client, server))

    def answer() -> None:
        held = [listener, *half_closed, *(end for pair in pairs for end in pair), *dialled]
        inodes = " ".join(str(os.fstat(sock.fileno()).st_ino) for sock in held)
        print(f"OK {len(os.listdir('/proc/self/fd'))} {inodes}", flush=True)

    answer()
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 120)
        line = sys.stdin.readline() if ready else ""
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "open":
            for _ in range(int(words[1])):
                connect()
        elif words[0] == "close":
            for _ in range(int(words[1])):
                client, server = pairs.pop()
                client.close()
                half_closed.append(server)
        elif words[0] == "swap":
            for end in pairs.pop():
                end.close()
            connect()
        elif words[0] == "swapout":
            for end in pairs.pop():
                end.close()
            for _ in range(2):
                dialled.append(socket.create_connection(("127.0.0.1", int(words[1])), 10))
        elif words[0] == "file":
            for end in pairs.pop():
                end.close()
            files += [os.open("/dev/null", os.O_RDONLY) for _ in range(2)]
        answer()
    for sock in [listener, *half_closed, *(end for pair in pairs for end in pair), *dialled]:
        sock.close()
    for fd in files:
        os.close(fd)


# --- the test's side ---------------------------------------------------------------------------


@dataclass
class Holder:
    """A running holder: its process, and what it said last (its descriptor count and the
    inodes of the sockets it holds)."""

    process: subprocess.Popen[str]
    inodes: list[int]
    fds: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def tell(self, command: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        self._read()

    def _read(self) -> None:
        assert self.process.stdout is not None
        words = self.process.stdout.readline().split()
        assert words and words[0] == "OK", words
        self.fds, self.inodes = int(words[1]), [int(word) for word in words[2:]]


@contextlib.contextmanager
def holder(name: str, connections: int = 0) -> Iterator[Holder]:
    """The program above, named ``name``, holding ``connections`` connections (both ends);
    ended (and reaped) when the block ends, also when a test fails."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        held = Holder(process, [], 0)
        held._read()
        if connections:
            held.tell(f"open {connections}")
        yield held
    finally:
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    main()
