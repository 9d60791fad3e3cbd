"""Real processes with hostile names hold loopback sockets; tcphealth's output stays inert.

Each child is a Python interpreter started with a crafted argv (argv[0] and the arguments hold
ESC, OSC, markup, newlines, tabs, a C1 control, 300 characters and bytes that are not UTF-8)
that renames itself with prctl(PR_SET_NAME) to a name of the same kind, then holds a listener
and a connection to it. tcphealth runs as a separate process, filtered to the children, in
every format, from every live source, piped and in a pseudo-terminal, with colour and without.
The children are stopped by their pid in a ``finally``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.inertness import SGR, control_bytes

pytestmark = pytest.mark.live
REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import ctypes, socket, sys
name = bytes.fromhex(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0) != 0:  # PR_SET_NAME
    raise SystemExit("prctl failed")
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4)
client = socket.create_connection(listener.getsockname())
accepted, _ = listener.accept()
print(listener.getsockname()[1], flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@dataclass(frozen=True)
class Hostile:
    comm: bytes  # what prctl sets: at most 15 bytes
    args: tuple[bytes, ...]  # more of the command line
    table: str  # how the table and the Nagios line show the name
    plain: str  # how plain shows it (quoted, backslashes doubled)

    @property
    def argv0(self) -> bytes:
        return b"\x1b[2J" + self.comm

    @property
    def name(self) -> str:
        """What /proc gives back, decoded as tcphealth decodes it."""
        return self.comm.decode("utf-8", "backslashreplace")


HOSTILE = (
    Hostile(
        b"\x1b[31mred\x1b[0m",
        (b"\x1b]0;title\x07", b"[bold red]x[/]"),
        r"\x1b[31mred\x1b[0m",
        r'"\x1b[31mred\x1b[0m"',
    ),
    Hostile(
        b"\x1b]0;pwn\x07", (b"line1\nline2", b"tab\there"), r"\x1b]0;pwn\x07", r'"\x1b]0;pwn\x07"'
    ),
    Hostile(
        b"[bold red]x[/]", ("\x9b31m".encode(), b"z" * 300), "[bold red]x[/]", '"[bold red]x[/]"'
    ),
    Hostile(
        b"a\nb\tc\x9b\xff",
        (b"\xff\xfe not utf-8", b"\x7f"),
        r"a\nb\tc\x9b\xff",
        r'"a\nb\tc\\x9b\\xff"',
    ),
)


@dataclass(frozen=True)
class Child:
    pid: int
    port: int
    hostile: Hostile


def _start(hostile: Hostile) -> tuple[subprocess.Popen[bytes], int]:
    child = subprocess.Popen(
        [hostile.argv0, "-c", CHILD, hostile.comm.hex().encode(), *hostile.args],
        executable=sys.executable,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], 60)
    assert ready, "the hostile child did not start in 60 s"
    return child, int(child.stdout.readline())


@pytest.fixture(scope="module")
def children() -> Iterator[list[Child]]:
    started: list[subprocess.Popen[bytes]] = []
    found: list[Child] = []
    try:
        for hostile in HOSTILE:
            process, port = _start(hostile)
            started.append(process)
            found.append(Child(process.pid, port, hostile))
            comm = Path(f"/proc/{process.pid}/comm").read_bytes()
            assert comm == hostile.comm + b"\n"  # the kernel kept every byte
        yield found
    finally:
        for process in started:
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()  # closing stdin ends the child's read(), and the child
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, 9)
                process.wait(timeout=10)


def _pid_args(children: list[Child]) -> list[str]:
    return [arg for child in children for arg in ("--pid", str(child.pid))]


def _env(**changes: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120", "NO_COLOR": "1"}
    env.update(changes)
    return {key: value for key, value in env.items() if value}


def tcphealth(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(
        [sys.executable, "-m", "tcphealth", *args],
        capture_output=True,
        timeout=120,
        cwd=REPO,
        env=env or _env(),
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done


def _command_line(hostile: Hostile) -> list[str]:
    argv = (hostile.argv0, b"-c", CHILD.encode(), hostile.comm.hex().encode(), *hostile.args)
    return [arg.decode("utf-8", "backslashreplace") for arg in argv]


@pytest.mark.parametrize("fmt", ["table", "plain", "json", "ndjson"])
def test_every_format_is_inert(children: list[Child], fmt: str) -> None:
    done = tcphealth(*_pid_args(children), "--all", "--sockets", "--format", fmt)
    assert control_bytes(done.stdout) == []
    assert control_bytes(done.stderr) == []
    text = done.stdout.decode()
    if fmt == "table":
        for child in children:
            assert f"pid {child.pid} {child.hostile.table}  user root" in text
        assert "\\x1b[2J\\x1b[31mred\\x1b[0m -c " in text  # a command line, spelled out
    if fmt == "plain":
        for child in children:
            lines = [line for line in text.splitlines() if f" pid={child.pid} " in line]
            # three groups (LISTEN and the two ends of the connection), three socket lines
            assert len(lines) == 6
            assert all(f" process={child.hostile.plain} " in line for line in lines)
    if fmt == "json":
        processes = {p["pid"]: p for p in json.loads(text)["processes"]}
        for child in children:
            assert processes[child.pid]["name"] == child.hostile.name
            assert processes[child.pid]["cmdline"] == _command_line(child.hostile)
    if fmt == "ndjson":
        by_pid: dict[int, list[str]] = {}
        for line in text.splitlines():
            record = json.loads(line)
            assert record["type"] == "socket"
            by_pid.setdefault(record["pids"][0], []).append(record["process"])
        assert by_pid == {child.pid: [child.hostile.name] * 3 for child in children}


@pytest.mark.parametrize("source", ["procfs", "psutil"])
def test_every_source_reads_the_same_names(children: list[Child], source: str) -> None:
    """psutil hands undecodable bytes over as lone surrogates; they must read as procfs's."""
    done = tcphealth("--source", source, *_pid_args(children), "--all", "--format", "json")
    assert control_bytes(done.stdout) == []
    processes = {p["pid"]: p for p in json.loads(done.stdout)["processes"]}
    for child in children:
        assert processes[child.pid]["name"] == child.hostile.name
        assert processes[child.pid]["cmdline"] == _command_line(child.hostile)


def test_sockets_plain_is_one_line_per_socket(children: list[Child]) -> None:
    plain = tcphealth("sockets", *_pid_args(children), "--format", "plain").stdout.decode()
    lines = plain.splitlines()
    assert len(lines) == 3 * len(children)
    assert all(re.match(r"^(LISTEN|ESTABLISHED) local=127\.0\.0\.1:\d+ ", line) for line in lines)


def _in_pty(args: list[str], env: dict[str, str]) -> bytes:
    """stdout of ``tcphealth ARGS`` on a pseudo-terminal 120 columns wide, in raw mode (so a
    newline stays a newline and a leaked carriage return is seen)."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
        with subprocess.Popen(
            [sys.executable, "-m", "tcphealth", *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env=env,
        ) as process:
            os.close(slave)
            slave = -1
            chunks: list[bytes] = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 1)
                if not ready:
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            assert process.wait(timeout=60) == 0
        return b"".join(chunks)
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)


def test_in_a_terminal_with_and_without_colour(children: list[Child]) -> None:
    # no --format: a terminal gets a table; no pager: the bytes compared are tcphealth's own.
    # --netns self: the two runs are compared line by line, and other network namespaces
    # (other suites' labs) may come or go between them.
    args = [*_pid_args(children), "--all", "--sockets", "--no-pager", "--netns", "self"]
    plain = _in_pty(args, _env(TERM="xterm-256color"))
    coloured = _in_pty(args, _env(TERM="xterm-256color", NO_COLOR=""))
    assert b"\x1b" not in plain and control_bytes(plain) == []
    assert SGR.search(coloured) and control_bytes(coloured, colour=True) == []
    clock = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
    age = re.compile(
        r"\s+\d+(\.\d)?[smhd](\d\d[smh])?$"
    )  # the AGE column moves on between the two runs

    def comparable(output: bytes) -> list[str]:
        # The terminal gets stderr too: a note about the host's other processes (one that
        # exited during the scan, on a busy machine) may come in one run and not the other.
        return [
            age.sub(" AGE", clock.sub("TIME", line.rstrip()))
            for line in output.decode().splitlines()
            if not line.startswith("tcphealth: note: ")
        ]

    assert comparable(SGR.sub(b"", coloured)) == comparable(plain)
    for child in children:
        assert f"pid {child.pid} {child.hostile.table}".encode() in plain
