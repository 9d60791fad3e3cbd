"""Row-level behaviour of the /proc/net/tcp parser: state codes, mini sockets, bad rows."""

from __future__ import annotations

import pytest

from tcphealth.errors import ProcParseError
from tcphealth.model import Family, TcpState, TimerKind
from tcphealth.sources.procfs import parse_table

HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)


def row(state: str, *, inode: str = "4242", rest: str = " 1 0000000000000000 20 4 0 10 -1") -> str:
    return (
        f"   0: 0100007F:1F90 0100007F:C350 {state} 00000000:00000000 00:00000000 00000000  "
        f"1000        0 {inode}{rest}\n"
    )


@pytest.mark.parametrize(
    ("code", "state"),
    [
        ("01", TcpState.ESTABLISHED),
        ("02", TcpState.SYN_SENT),
        ("03", TcpState.SYN_RECV),
        ("04", TcpState.FIN_WAIT1),
        ("05", TcpState.FIN_WAIT2),
        ("06", TcpState.TIME_WAIT),
        ("07", TcpState.CLOSE),
        ("08", TcpState.CLOSE_WAIT),
        ("09", TcpState.LAST_ACK),
        ("0A", TcpState.LISTEN),
        ("0B", TcpState.CLOSING),
        ("0C", TcpState.SYN_RECV),
        ("0D", TcpState.BOUND_INACTIVE),
    ],
)
def test_every_kernel_state_code(code: str, state: TcpState) -> None:
    parsed = parse_table([HEADER, row(code)], Family.IPV4, "t")
    assert [s.state for s in parsed.sockets] == [state]
    assert parsed.sockets[0].raw_state is None


def test_unknown_state_code_is_kept_not_fatal() -> None:
    parsed = parse_table([HEADER, row("3F")], Family.IPV4, "t")
    (sock,) = parsed.sockets
    assert sock.state is TcpState.UNKNOWN
    assert sock.raw_state == "3F"


def test_syn_recv_request_socket_keeps_listener_uid_and_synack_retries() -> None:
    line = (
        "   5: 0100007F:1F90 0100007F:C350 03 00000000:00000000 01:00000064 00000002  "
        "1000        0 0 0 0000000000000000\n"
    )
    (sock,) = parse_table([HEADER, line], Family.IPV4, "t").sockets
    assert sock.state is TcpState.SYN_RECV
    assert (sock.uid, sock.retransmits, sock.probes, sock.inode) == (1000, 2, None, 0)
    assert (sock.timer, sock.timer_seconds) == (TimerKind.RETRANSMIT, 1.0)


def test_timer_none_has_no_seconds() -> None:
    (sock,) = parse_table([HEADER, row("01")], Family.IPV4, "t").sockets
    assert (sock.timer, sock.timer_seconds) == (TimerKind.NONE, None)


def test_crlf_and_blank_lines_are_tolerated() -> None:
    parsed = parse_table([HEADER.replace("\n", "\r\n"), "\r\n", row("01")], Family.IPV4, "t")
    assert len(parsed.sockets) == 1


def test_repeated_header_of_a_second_paste_is_skipped() -> None:
    lines = [HEADER, row("01", inode="1"), HEADER, row("0A", inode="2")]
    parsed = parse_table(lines, Family.IPV4, "t")
    assert [s.state for s in parsed.sockets] == [TcpState.ESTABLISHED, TcpState.LISTEN]


def test_cut_short_row_is_skipped_with_its_line_number() -> None:
    lines = [HEADER, row("01"), "   1: 0100007F:1F90 0100007F:C3\n"]
    parsed = parse_table(lines, Family.IPV4, "t")
    assert len(parsed.sockets) == 1
    assert parsed.skipped == [(3, "3 columns, at least 10 expected")]


def test_strict_mode_names_file_line_and_text() -> None:
    lines = [HEADER, "   0: 0100007F:1F90 0100007F:C350 0G 0:0 00:0 0 0 0 7\n"]
    with pytest.raises(ProcParseError) as caught:
        parse_table(lines, Family.IPV4, "net/tcp", strict=True)
    message = str(caught.value)
    assert message.startswith("net/tcp:2: ")
    assert "0G" in message


def test_ipv6_row_in_ipv4_table_is_rejected() -> None:
    line = (
        "   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000     0        0 23556 1 0 100 0 0 10 0\n"
    )
    parsed = parse_table([HEADER, line], Family.IPV4, "t")
    assert parsed.sockets == []
    assert "ipv4 address expected" in parsed.skipped[0][1]


@pytest.mark.parametrize("text", ["", "\n", "hello world\n", "sl local st\n"])
def test_not_a_tcp_table(text: str) -> None:
    with pytest.raises(ProcParseError):
        parse_table(text.splitlines(keepends=True), Family.IPV4, "t")


def test_a_row_listed_twice_is_kept_once_by_endpoints_and_inode_together() -> None:
    # Issue 26 looks duplicates up by inode first (no tuple per row); the key is still the
    # endpoints and the inode together: one inode with other endpoints (an address that
    # changed between the kernel's two reads) is another row, and each is kept once.
    moved = row("01").replace("0100007F:1F90", "0200007F:1F90")
    time_wait = row("06", inode="0")
    lines = [HEADER, row("01"), moved, row("01"), moved, time_wait, time_wait, moved]
    parsed = parse_table(lines, Family.IPV4, "t")
    assert [str(sock.local) for sock in parsed.sockets] == [
        "127.0.0.1:8080",
        "127.0.0.2:8080",
        "127.0.0.1:8080",
    ]
    assert [sock.inode for sock in parsed.sockets] == [4242, 4242, 0]
    assert parsed.duplicates == 4


def test_equal_endpoints_and_uids_of_a_table_are_one_object_each() -> None:
    lines = [HEADER, *(row("01", inode=str(100 + n)) for n in range(50))]
    parsed = parse_table(lines, Family.IPV4, "t")
    assert len(parsed.sockets) == 50
    assert len({id(sock.local) for sock in parsed.sockets}) == 1
    assert len({id(sock.remote) for sock in parsed.sockets}) == 1
    assert len({id(sock.uid) for sock in parsed.sockets}) == 1
    assert parsed.sockets[0].uid == 1000
