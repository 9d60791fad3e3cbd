"""Each text format, line by line: what it yields, what it leaves unknown, broken lines."""

from __future__ import annotations

import io
import ipaddress
from pathlib import Path

import pytest

from tcphealth.errors import InputError
from tcphealth.model import Family, OwnerSource, TcpState, TimerKind
from tcphealth.sources import load, load_series
from tcphealth.sources.text.lines import RowError, parse_ss_duration
from tcphealth.sources.text.netstat_linux import Columns
from tcphealth.sources.text.netstat_linux import parse_row as netstat_row
from tcphealth.sources.text.ss import parse_row as ss_row


def write(tmp_path: Path, text: str, name: str = "paste.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("59sec", 59),
        ("052ms", 0.052),
        ("1.076ms", 1.076),
        ("1min2sec", 62),
        ("10min", 600),
        ("2min", 120),
        ("5.200ms", 5.2),
        ("", 0),
        # iproute2 6.11 and later (commit 3e807112): seconds and milliseconds end in "sec";
        # the commit message's own TIME-WAIT rows, before ("9.373ms") and after
        ("9.501sec", 9.501),
        ("1.098sec", 1.098),
        ("476ms", 0.476),
        ("9.373ms", 9.373),
    ],
)
def test_ss_timer_durations(text: str, seconds: float) -> None:
    assert parse_ss_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1.", "abc", "5s", "1min-2sec", "9sec501sec", "1.5secms"])
def test_ss_timer_duration_rejects(text: str) -> None:
    with pytest.raises(RowError):
        parse_ss_duration(text)


def test_a_row_with_the_sec_timer_of_iproute2_6_11_is_read_not_skipped(tmp_path: Path) -> None:
    # the row of iproute2 commit 3e807112's message, with addresses in place of its "..."
    path = write(
        tmp_path,
        "State     Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
        "TIME-WAIT 0      0      10.0.0.1:8080      10.0.0.2:51000    timer:(timewait,9.501sec,0)\n",
    )
    (sock,) = load(path).sockets
    assert (sock.state, sock.timer) == (TcpState.TIME_WAIT, TimerKind.TIME_WAIT)
    assert sock.timer_seconds == pytest.approx(9.501)


# Captured on Linux 6.x with iproute2 6.1 (`ss -tanpoeim`), a listener with one connection
# left in its accept queue after the client closed (CLOSE-WAIT, ino:0), and one accepted.
SS_FULL = (
    "State      Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n"
    'LISTEN     1      8          127.0.0.1:46397      0.0.0.0:*     users:(("python3",pid=9740,fd=3)) ino:19944 sk:3a0 cgroup:/ <->\n'
    "\t skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d0) bbr cwnd:10 unacked:1\n"
    "FIN-WAIT-2 0      0          127.0.0.1:58278    127.0.0.1:46397 timer:(timewait,59sec,0) ino:0 sk:3a1\n"
    "\t                                   \n"
    "CLOSE-WAIT 6      0          127.0.0.1:46397    127.0.0.1:58310 ino:0 sk:3a5 cgroup:/ -->\n"
    "\t skmem:(r837,rb131072,t0,tb3939840,f3259,w0,o0,bl0,d0) ts sack bbr wscale:10,10 rto:200 rtt:0.008/0.004 ato:40 mss:32768 cwnd:10 bytes_received:6 lastsnd:376 lastrcv:376 lastack:376 retrans:0/2 backoff:1\n"
    'CLOSE-WAIT 4      0          127.0.0.1:46397    127.0.0.1:58306 users:(("python3",pid=9740,fd=9)) uid:1000 ino:19950 sk:3a6 cgroup:/ -->\n'
)


def test_ss_with_every_option(tmp_path: Path) -> None:
    snapshot = load(write(tmp_path, SS_FULL), input_format="ss")
    listener, fin_wait2, unaccepted, accepted = snapshot.sockets
    assert (listener.recv_queue, listener.listen_backlog, listener.send_queue) == (1, 8, None)
    assert (listener.inode, listener.cookie, listener.uid) == (19944, 0x3A0, 0)
    assert listener.timer is TimerKind.NONE  # -o shown on other rows: none runs here
    assert fin_wait2.timer_seconds == 59 and fin_wait2.owner_source is OwnerSource.NONE
    assert unaccepted.owner_source is OwnerSource.LISTENER and unaccepted.pids == (9740,)
    assert unaccepted.tcp_info is not None
    info = unaccepted.tcp_info
    assert (info.last_data_recv_ms, info.last_data_sent_ms, info.last_ack_recv_ms) == (
        376,
        376,
        376,
    )
    assert (info.rto_us, info.rtt_us, info.total_retrans, info.backoff) == (200000, 8, 2, 1)
    assert accepted.owner_source is OwnerSource.FD and accepted.uid == 1000
    assert accepted.tcp_info is None
    assert snapshot.processes[0].name == "python3"
    assert snapshot.host.source == f"ss:{tmp_path / 'paste.txt'}"
    assert snapshot.attribution.attempted


def test_ss_addresses_old_and_new() -> None:
    row = ss_row("ESTAB 0 0 [::ffff:127.0.0.1]:8080 [::ffff:127.0.0.1]:5000")
    assert row.family is Family.IPV6 and row.local.ipv4_mapped == ipaddress.IPv4Address("127.0.0.1")
    row = ss_row("LISTEN 0 4096 127.0.0.53%lo:53 0.0.0.0:*")
    assert str(row.local) == "127.0.0.53:53" and row.remote.port is None
    row = ss_row("LISTEN 0 128 :::22 :::*")
    assert str(row.local) == "[::]:22"
    row = ss_row("tcp LISTEN 0 1 *:12345 *:*")
    assert row.family is Family.IPV4 and row.local.is_unspecified
    row = ss_row("LISTEN 0 128 [fe80::1%eth0]:22 [::]:*")
    assert row.local.port == 22


def test_ss_state_filter_without_state_column(tmp_path: Path) -> None:
    text = (
        "root@h:~# ss -tn state close-wait\n"
        "Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
        "1      0      10.0.0.1:80        10.0.0.2:5000\n"
    )
    (sock,) = load(write(tmp_path, text)).sockets
    assert sock.state is TcpState.CLOSE_WAIT and sock.recv_queue == 1


NETSTAT_EO = (
    "Active Internet connections (servers and established)\n"
    "Proto Recv-Q Send-Q Local Address           Foreign Address         State       User       Inode      PID/Program name     Timer\n"
    "tcp        1      0 127.0.0.1:46397         0.0.0.0:*               LISTEN      0          19944      9740/python3         off (0.00/0/0)\n"
    "tcp        0      0 127.0.0.1:58278         127.0.0.1:46397         FIN_WAIT2   0          0          -                    timewait (59.65/0/0)\n"
    "tcp        6      0 127.0.0.1:46397         127.0.0.1:58310         CLOSE_WAIT  0          0          -                    off (0.00/0/0)\n"
    "tcp        0      1 10.0.0.1:5000           10.0.0.9:9100           SYN_SENT    1000       19950      9741/curl            on (0.20/3/0)\n"
    "tcp6       0      0 :::22                   :::*                    LISTEN      0          100        1/systemd            keepalive (7200.00/0/2)\n"
)


def test_netstat_linux_with_e_p_o(tmp_path: Path) -> None:
    snapshot = load(write(tmp_path, NETSTAT_EO))
    listener, fin_wait2, unaccepted, syn_sent, v6 = snapshot.sockets
    assert snapshot.host.source.startswith("netstat-linux:")
    assert (listener.recv_queue, listener.send_queue, listener.listen_backlog) == (1, 0, None)
    assert (listener.timer, listener.timer_seconds, listener.inode) == (TimerKind.NONE, None, 19944)
    assert (fin_wait2.timer, fin_wait2.timer_seconds) == (TimerKind.TIME_WAIT, 59.65)
    assert fin_wait2.owner_source is OwnerSource.NONE
    assert unaccepted.owner_source is OwnerSource.LISTENER and unaccepted.pids == (9740,)
    assert (syn_sent.timer, syn_sent.retransmits, syn_sent.uid) == (TimerKind.RETRANSMIT, 3, 1000)
    assert (v6.family, v6.timer, v6.probes) == (Family.IPV6, TimerKind.KEEPALIVE, 2)
    assert {p.pid: p.name for p in snapshot.processes} == {
        1: "systemd",
        9740: "python3",
        9741: "curl",
    }


def test_netstat_linux_cut_ipv6_address_is_flagged() -> None:
    # eminence-procfs's vector: really 2a01:4f8:110:31e8::2 port 33141 -> [2a00:1450:4001:818::200e]:80
    row = netstat_row(
        "tcp6       0      0 2a01:4f8:110:31e8:33141 2a00:1450:4001:818:::80 TIME_WAIT",
        Columns(None),
    )
    assert row.truncated
    assert row.local.port == 33141 and row.remote.port == 80  # netstat keeps the port
    wide = netstat_row(
        "tcp6 0 0 2a01:4f8:110:31e8::2:33141 2a00:1450:4001:818::200e:80 TIME_WAIT",
        Columns(None),
        wide=True,
    )
    assert not wide.truncated
    assert wide.local.address == ipaddress.IPv6Address("2a01:4f8:110:31e8::2")


def test_netstat_linux_without_root_marks_unseen(tmp_path: Path) -> None:
    text = (
        "(Not all processes could be identified, non-owned process info\n"
        " will not be shown, you would have to be root to see it all.)\n"
        "Active Internet connections (servers and established)\n"
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name\n"
        "tcp        0      0 0.0.0.0:22              0.0.0.0:*               LISTEN      -\n"
        "tcp        0      0 10.0.0.1:22             10.0.0.2:5000           ESTABLISHED -\n"
    )
    snapshot = load(write(tmp_path, text))
    assert {s.owner_source for s in snapshot.sockets} == {OwnerSource.UNSEEN}
    assert snapshot.host.privileged is False
    assert snapshot.attribution.sockets_unseen == 2


def test_windows_without_pid_column_has_unknown_owners(tmp_path: Path) -> None:
    text = (
        "\r\nActive Connections\r\n\r\n"
        "  Proto  Local Address          Foreign Address        State\r\n"
        "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING\r\n"
        "  TCP    [::1]:50515            [::1]:50051            TIME_WAIT\r\n"
    )
    snapshot = load(write(tmp_path, text))
    assert [s.state for s in snapshot.sockets] == [TcpState.LISTEN, TcpState.TIME_WAIT]
    assert {s.owner_source for s in snapshot.sockets} == {OwnerSource.UNKNOWN}
    assert snapshot.attribution.attempted is False
    assert snapshot.sockets[1].family is Family.IPV6


def test_macos_listen_and_wildcards(tmp_path: Path) -> None:
    text = (
        "Active Internet connections (including servers)\n"
        "Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)\n"
        "tcp46      0      0  *.22                   *.*                    LISTEN\n"
        "tcp4       0      0  127.0.0.1.631          *.*                    LISTEN\n"
        "udp4       0      0  *.5353                 *.*\n"
    )
    snapshot = load(write(tmp_path, text))
    dual, local = snapshot.sockets
    assert (dual.family, str(dual.local), dual.recv_queue) == (Family.IPV6, "[::]:22", None)
    assert str(local.local) == "127.0.0.1:631" and not local.truncated


BROKEN = (
    "State  Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
    "ESTAB  0      0      10.0.0.1:22        10.0.0.2:5000\n"
    "ESTAB  0      x      10.0.0.1:22        10.0.0.2:5001\n"
    "Some prose about the incident, which is not a row.\n"
    "CLOSE-WAIT 1  0      10.0.0.1:22\n"
    "ESTAB  0      0      10.0.0.1:22        10.0.0.2:5002\n"
)


def test_broken_lines_are_skipped_once_each_with_their_number(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    snapshot = load(path)
    assert len(snapshot.sockets) == 2
    assert snapshot.skipped_lines == 2
    skipped = [note for note in snapshot.notes if "line skipped" in note]
    assert [note.split(": line skipped")[0] for note in skipped] == [f"{path}:3", f"{path}:5"]
    assert "Send-Q 'x' is not a number" in skipped[0]


def test_strict_refuses_a_broken_line(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN)
    with pytest.raises(InputError) as caught:
        load(path, strict=True)
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{path}:3: line skipped: Send-Q 'x' is not a number")


def test_forced_format_and_nothing_found(tmp_path: Path) -> None:
    path = write(tmp_path, NETSTAT_EO)
    with pytest.raises(InputError, match=r"no TCP socket table found .*ss output"):
        load(path, input_format="ss")
    with pytest.raises(InputError, match=r"empty\.txt: empty \(0 bytes\): nothing to read"):
        load(write(tmp_path, "", "empty.txt"))
    with pytest.raises(ValueError, match="unknown input format"):
        load(path, input_format="xml")


def test_repeated_header_is_a_new_capture(tmp_path: Path) -> None:
    one = "State Recv-Q Send-Q Local Address:Port Peer Address:Port\nESTAB 0 0 10.0.0.1:22 10.0.0.2:5000\n"
    two = "State Recv-Q Send-Q Local Address:Port Peer Address:Port\nESTAB 0 0 10.0.0.1:22 10.0.0.2:5001\nESTAB 0 0 10.0.0.1:22 10.0.0.2:5002\n"
    path = write(tmp_path, one + two)
    assert [len(s.sockets) for s in load_series(path)] == [1, 2]
    last = load(path)
    assert len(last.sockets) == 2 and "2 captures were found" in last.notes[0]


def test_stdin_and_crlf() -> None:
    text = NETSTAT_EO.replace("\n", "\r\n")
    snapshot = load("-", io.StringIO(text))
    assert len(snapshot.sockets) == 5
    assert snapshot.host.source == "netstat-linux:<stdin>"


def test_copied_proc_tree_directory(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000   999        0 100 1 0 100 0 0 10 0\n"
    )
    snapshot = load(tmp_path)
    assert [s.state for s in snapshot.sockets] == [TcpState.LISTEN]
    assert snapshot.attribution.attempted is False  # no pid directories in the copy
    with pytest.raises(InputError, match="a directory"):
        load(tmp_path, input_format="ss")
