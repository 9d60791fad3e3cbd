"""The paste-format registry: one ordered list from which every format list is made, whose
declarations (what a format carries, its place in the order) hold for real output."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tcphealth import sources
from tcphealth.cli import main
from tcphealth.errors import InputError
from tcphealth.model import OwnerSource, Snapshot, Socket, TcpState
from tcphealth.sources import load_series
from tcphealth.sources.text import TEXT_INPUT_FORMATS, registry
from tcphealth.sources.text.parser import RowParser
from tests import real_excerpts

REALWORLD = Path(__file__).resolve().parent.parent / "fixtures" / "realworld"
Carries = registry.Carries


def corpus_lines() -> list[str]:
    """Every line of the corpus, and of the real excerpts of shapes it has no paste of yet."""
    return [
        line
        for path in sorted(REALWORLD.glob("**/*.txt"))
        for line in path.read_text(errors="replace").splitlines()
    ] + [line for excerpt in real_excerpts.ALL for line in excerpt.splitlines()]


def test_every_declared_format_loads_its_parser_and_says_why_it_stands_where_it_does() -> None:
    assert {"ss", "netstat-linux", "netstat-macos", "netstat-windows"} <= set(registry.NAMES)
    for fmt in registry.FORMATS:
        assert isinstance(registry.parser(fmt.name), RowParser)
        assert fmt.place.strip() and fmt.help.strip()
    assert len(set(registry.NAMES)) == len(registry.NAMES)


def test_input_format_choices_derive_from_the_registry() -> None:
    # The choices of the hand-kept list they replace, in its order (a new format may add more).
    legacy = ["auto", "snapshot", "proc", "ss", "netstat"]
    legacy += ["netstat-linux", "netstat-macos", "netstat-windows"]
    assert [choice for choice in sources.INPUT_FORMATS if choice in legacy] == legacy
    assert sources.INPUT_FORMATS[:3] == ("auto", "snapshot", "proc")
    assert set(sources.INPUT_FORMATS[3:]) == set(registry.CHOICES)
    assert TEXT_INPUT_FORMATS["netstat"] >= {"netstat-linux", "netstat-macos", "netstat-windows"}
    assert TEXT_INPUT_FORMATS["text"] == set(registry.NAMES)
    help_text = " ".join(
        CliRunner().invoke(main, ["check", "--help"], terminal_width=1000).output.split()
    )
    for fmt in registry.FORMATS:
        assert f"{fmt.name}: {fmt.help}" in help_text
    assert "netstat: any netstat" in help_text


def test_listing_the_formats_imports_no_reader() -> None:
    # The command line builds --input-format from the registry; a live run must not pay for
    # importing the paste readers.
    code = (
        "import sys, tcphealth.cli;"
        "print(sorted(m for m in sys.modules if m.startswith('tcphealth.sources.text')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "['tcphealth.sources.text', 'tcphealth.sources.text.registry']"


def claims(tokens: list[str]) -> list[str]:
    return [name for name in registry.NAMES if registry.parser(name).looks_like_row(tokens)]


def test_row_shapes_are_disjoint_on_every_real_paste_line() -> None:
    """The registry's order within its shape pass decides nothing today: no line of the
    real-world pastes is claimed by two formats. (Checked on real rows, so that the test
    fails if it ever stops seeing rows at all.)"""
    claimed: dict[str, int] = dict.fromkeys(registry.NAMES, 0)
    for line in corpus_lines():
        found = claims(line.split())
        assert len(found) <= 1, (line, found)
        for name in found:
            claimed[name] += 1
    assert all(count > 0 for count in claimed.values()), claimed


def test_headers_are_claimed_by_one_format_each() -> None:
    headers: dict[str, int] = dict.fromkeys(registry.NAMES, 0)
    for line in corpus_lines():
        found = [name for name in registry.NAMES if registry.parser(name).is_header(line)]
        assert len(found) <= 1, (line, found)
        for name in found:
            headers[name] += 1
    assert all(count > 0 for count in headers.values()), headers


_FIRST = st.sampled_from(
    ["tcp", "tcp6", "tcp4", "tcp46", "TCP", "TCPv6", "udp", "ESTAB", "LISTEN", "CLOSE-WAIT",
     "TIME_WAIT", "0", "12", "7fb03cb94bcb6475", "12345678"]
)  # fmt: skip
_CELL = st.sampled_from(
    ["0", "3", "4ca24b6e", "tcp4", "tcp", "ESTAB", "LISTENING", "127.0.0.1:80", "0.0.0.0:*",
     "[::1]:22", ":::22", "127.0.0.1.80", "*.*", "::1.22", "10.0.0.1:*", "a:1.2", "1.2:3",
     "users:((\"x\",pid=1,fd=3))", "-", "1/java"]
)  # fmt: skip


@given(first=_FIRST, rest=st.lists(_CELL, max_size=7))
def test_row_shapes_are_disjoint_on_mixed_cells(first: str, rest: list[str]) -> None:
    assert len(claims([first, *rest])) <= 1


def shown(sock: Socket) -> set[Carries]:
    """What a socket read from a paste shows besides its state and endpoints."""
    out: set[Carries] = set()
    if sock.owner_source is not OwnerSource.UNKNOWN:
        out.add(Carries.OWNERS)
    if sock.timer is not None or sock.retransmits is not None or sock.probes is not None:
        out.add(Carries.TIMERS)
    for carried, value in (
        (Carries.UIDS, sock.uid),
        (Carries.INODES, sock.inode),
        (Carries.COOKIES, sock.cookie),
        (Carries.TCP_INFO, sock.tcp_info),
        (Carries.BACKLOGS, sock.listen_backlog),
    ):
        if value is not None:
            out.add(carried)
    if sock.state is TcpState.LISTEN:
        if sock.recv_queue is not None:
            out.add(Carries.ACCEPT_QUEUES)
    elif sock.recv_queue is not None or sock.send_queue is not None:
        out.add(Carries.QUEUES)
    return out


def shown_per_format(snapshots: list[Snapshot]) -> dict[str, set[Carries]]:
    """For captures of one format only: everything any of their sockets shows."""
    seen: dict[str, set[Carries]] = {}
    for snapshot in snapshots:
        kinds = snapshot.host.source.rsplit(":", 1)[0].split("+")
        if len(kinds) == 1 and kinds[0] in registry.BY_NAME:
            for sock in snapshot.sockets:
                seen.setdefault(kinds[0], set()).update(shown(sock))
    return seen


def output(command: list[str]) -> str:
    # Other processes on the host may have names that are not UTF-8 (netstat -p shows them).
    done = subprocess.run(command, capture_output=True, check=True, timeout=30)
    return done.stdout.decode(errors="replace")


@pytest.fixture
def live_pastes(tmp_path: Path) -> Iterator[list[Path]]:
    """Real ``ss -tanpoeim`` and ``netstat -tanpoe`` output of loopback sockets made here: a
    listener with one connection accepted and one left in its queue, keepalive on."""
    opened: list[socket.socket] = []
    try:
        server = socket.socket()
        opened.append(server)
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        for _ in range(2):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            opened.append(client)
        accepted, _ = server.accept()
        opened.append(accepted)
        deadline = time.monotonic() + 5  # the second connection is in the accept queue
        ss_command = ["ss", "-tanpoeim", f"( sport = :{port} or dport = :{port} )"]
        while time.monotonic() < deadline:
            text = output(ss_command)
            if "LISTEN 1 " in " ".join(text.split()) + " ":
                break
            time.sleep(0.02)
        ss_path = tmp_path / "ss.txt"
        ss_path.write_text(f"# {' '.join(ss_command[:2])}\n{text}")
        netstat = output(["netstat", "-tanpoe"])
        netstat_path = tmp_path / "netstat.txt"
        # This process's sockets only, under netstat's header (the host may hold many others).
        mine = [line for line in netstat.splitlines() if f":{port} " in line]
        header = next(line for line in netstat.splitlines() if line.startswith("Proto"))
        netstat_path.write_text("\n".join([header, *mine]) + "\n")
        yield [ss_path, netstat_path]
    finally:
        for sock in opened:
            sock.close()


def test_what_a_format_carries_is_what_its_rows_show(
    live_pastes: list[Path], tmp_path: Path
) -> None:
    """Every format's declaration against real output: the pastes of incidents, the real
    excerpts of shapes the corpus lacks, and this host's own ss/netstat with every column on.
    A row never shows what its format does not declare, and every declared field shows up
    somewhere (a declaration is not a wish)."""
    excerpts = []
    for number, excerpt in enumerate(real_excerpts.ALL):
        excerpts.append(tmp_path / f"excerpt-{number}.txt")
        excerpts[-1].write_text(excerpt, encoding="utf-8")
    seen: dict[str, set[Carries]] = {}
    for path in [*sorted(REALWORLD.glob("**/*.txt")), *excerpts, *live_pastes]:
        try:
            snapshots = load_series(path)
        except InputError:  # /proc copies and UDP tables: not paste formats
            continue
        for name, fields in shown_per_format(snapshots).items():
            seen.setdefault(name, set()).update(fields)
    for fmt in registry.FORMATS:
        assert seen.get(fmt.name, set()) <= fmt.carries, fmt.name
        assert seen.get(fmt.name, set()) == fmt.carries, (fmt.name, fmt.carries - seen[fmt.name])
