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
- ``file``: close both ends of one connection and open two files in their place;
- ``quit`` (or end of input): close everything and exit.

It exits by itself after 120 s without a command, so a failed test cannot leave it behind.
"""

from __future__ import annotations

import os
import select
import socket
import sys


def main() -> None:
    with open("/proc/self/comm", "w") as comm:
        comm.write(sys.argv[1][:15])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    pairs: list[tuple[socket.socket, socket.socket]] = []
    half_closed: list[socket.socket] = []  # server ends whose client closed
    files: list[int] = []

    def connect() -> None:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        server, _ = listener.accept()
        pairs.append((client, server))

    def answer() -> None:
        held = [listener, *half_closed, *(end for pair in pairs for end in pair)]
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
        elif words[0] == "file":
            for end in pairs.pop():
                end.close()
            files += [os.open("/dev/null", os.O_RDONLY) for _ in range(2)]
        answer()
    for sock in [listener, *half_closed, *(end for pair in pairs for end in pair)]:
        sock.close()
    for fd in files:
        os.close(fd)


if __name__ == "__main__":
    main()
