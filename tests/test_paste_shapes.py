"""Paste shapes of issue #22 read from real output: PowerShell's Get-NetTCPConnection (table and
Group-Object counts), and the rule its Bound sockets need. Each excerpt says where it is from."""

# ruff: noqa: E501 -- rows are kept as wide as the tools print them

from __future__ import annotations

import ipaddress
from pathlib import Path

from tcphealth.diagnose import diagnose
from tcphealth.model import Finding, OwnerSource, ReportedCount, Severity, Snapshot, TcpState
from tcphealth.sources import load
from tcphealth.sources.text import read_text
from tcphealth.sources.text.lines import match_ss_summary
from tcphealth.sources.text.paste import read_paste
from tests.real_excerpts import (
    LSOF_J,
    LSOF_JL,
    LSOF_SS,
    MACOS_V,
    MACOS_V_GREP,
    PS_GROUPED,
    PS_NARROW,
    PS_TABLE,
    SS_SUMMARY_NEW,
    SS_SUMMARY_OLD,
    SS_TINM,
    WINDOWS_NAMES,
    WINDOWS_NO_HEADER,
)


def read(text: str) -> list[Snapshot]:
    return read_paste(text.splitlines(), "paste")


def last(text: str) -> Snapshot:
    return read(text)[-1]


def codes(snapshot: Snapshot) -> list[tuple[str, Severity, int | None]]:
    return [(f.code, f.severity, f.subject.pid) for f in diagnose(snapshot)]


# --- PowerShell Get-NetTCPConnection ------------------------------------------------------------


def test_powershell_table_rows_with_their_owner_and_bound_state() -> None:
    snapshot = last(PS_TABLE)
    assert snapshot.host.source == "powershell:paste"
    assert snapshot.host.platform == "windows"
    assert [(s.state, s.raw_state, s.local.port, s.pids) for s in snapshot.sockets] == [
        (TcpState.BOUND_INACTIVE, "Bound", 55113, (20756,)),
        (TcpState.BOUND_INACTIVE, "Bound", 52461, (20756,)),
        (TcpState.ESTABLISHED, "Established", 55113, (20756,)),
    ]
    established = snapshot.sockets[2]
    assert established.remote.address == ipaddress.IPv4Address("47.106.194.220")
    assert established.remote.port == 443
    assert established.recv_queue is None and established.timer is None  # Windows shows none
    assert all(s.owner_source is OwnerSource.FD for s in snapshot.sockets)


def test_powershell_table_without_the_owner_column_and_with_cut_addresses() -> None:
    snapshot = last(PS_NARROW)
    assert len(snapshot.sockets) == 3
    cut, loopback, v4 = snapshot.sockets
    assert cut.truncated and cut.local.port == 60108
    assert cut.remote.address == ipaddress.IPv6Address("2606:4700:90:0:f22e:fbec:5bed:a9b9")
    assert loopback.local.address == ipaddress.IPv6Address("::1") and not loopback.truncated
    assert v4.remote.port == 443
    # no OwningProcess column: owners unknown, not "held by nobody"
    assert {s.owner_source for s in snapshot.sockets} == {OwnerSource.UNKNOWN}
    assert any("cut short" in note for note in snapshot.notes)


def test_powershell_group_object_counts_are_reported_per_state_and_owner() -> None:
    snapshot = last(PS_GROUPED)
    assert snapshot.sockets == ()
    assert snapshot.host.platform == "windows"
    assert snapshot.state_counts == {
        "BOUND_INACTIVE": 51448,
        "CLOSE_WAIT": 12,
        "ESTABLISHED": 60,
        "LISTEN": 17,
        "TIME_WAIT": 46,
    }
    by_key = {(c.state, c.pids): c for c in snapshot.reported}
    bound = by_key[(TcpState.BOUND_INACTIVE, (44688,))]
    assert (bound.count, bound.selects) == (51382, "Bound, OwningProcess 44688 (node)")
    # pid 0 is the idle process: TIME_WAIT nobody holds
    assert by_key[(TcpState.TIME_WAIT, ())].count == 46
    names = {p.pid: p.name for p in snapshot.processes}
    assert names[44688] == "node" and names[7292] == "zerotier"  # the '...' of a cut name dropped
    assert 0 not in names


def test_a_process_holding_more_bound_sockets_than_windows_has_ports_is_critical() -> None:
    found = diagnose(last(PS_GROUPED))
    top: Finding = found[0]
    assert (top.code, top.severity, top.state, top.subject.pid, top.count) == (
        "bound-ports-held",
        Severity.CRITICAL,
        None,
        44688,
        51382,
    )
    assert "16,384 ports of Windows' default dynamic port range" in top.summary
    assert any("netsh int ipv4 show dynamicport tcp" in text for text in top.unchecked)
    # chrome's 66 bound sockets are a browser's ordinary business
    assert not any(f.code == "bound-ports-held" and f.subject.pid == 26924 for f in found)


def test_bound_rows_listed_by_one_process_are_judged_against_the_port_range() -> None:
    header = PS_TABLE.splitlines()[2:4]
    rows = [
        f"0.0.0.0                             {49152 + n:<9} 0.0.0.0                             0          Bound                      20756"
        for n in range(14000)
    ]
    snapshot = last("\n".join([*header, *rows]))
    assert len(snapshot.sockets) == 14000
    assert codes(snapshot)[:1] == [("bound-ports-held", Severity.WARNING, 20756)]  # 85% of 16,384
    # a known range decides: the same sockets in a range of 65,536-1024 ports are few
    wide = read_text(
        "net.ipv4.ip_local_port_range = 1024 65535\n" + "\n".join([*header, *rows]), "paste"
    )[-1]
    assert not any(code == "bound-ports-held" for code, _, _ in codes(wide))


def test_a_few_bound_sockets_are_nothing() -> None:
    assert not any(code == "bound-ports-held" for code, _, _ in codes(last(PS_TABLE)))


def test_a_grouped_count_by_state_alone_has_no_owner() -> None:
    snapshot = last(
        "Count Name                      Group\n"
        "----- ----                      -----\n"
        '   12 Established               {MSFT_NetTCPConnection (LocalAddress = "10.0.0.5", ...}\n'
        '    3 Listen                    {MSFT_NetTCPConnection (LocalAddress = "::", ...}\n'
    )
    assert snapshot.state_counts == {"ESTABLISHED": 12, "LISTEN": 3}
    assert snapshot.reported == ()


def test_reported_counts_are_model_records() -> None:
    (count,) = [c for c in last(PS_GROUPED).reported if c.state is TcpState.CLOSE_WAIT]
    assert count == ReportedCount(
        state=TcpState.CLOSE_WAIT,
        count=12,
        sockets=12,
        command="Get-NetTCPConnection | Group-Object State, OwningProcess",
        selects="CloseWait, OwningProcess 44688 (node)",
        pids=(44688,),
    )


# --- ss -s --------------------------------------------------------------------------------------


def test_ss_s_alone_is_an_input_its_counts_reported_and_its_orphans_a_counter() -> None:
    snapshot = last(SS_SUMMARY_NEW)
    assert snapshot.sockets == ()
    assert {(c.state, c.count, c.command) for c in snapshot.reported} == {
        (TcpState.ESTABLISHED, 0, "ss -s"),
        (TcpState.TIME_WAIT, 137, "ss -s"),
    }
    assert snapshot.state_counts == {"TIME_WAIT": 137}  # a count of 0 claims nothing
    assert snapshot.counters == {"sockstat.TCP.orphan": 20, "sockstat.TCP.tw": 137}
    old = last(SS_SUMMARY_OLD)
    assert old.state_counts == {"ESTABLISHED": 99, "TIME_WAIT": 1}
    assert {c.state for c in old.reported} == {
        TcpState.ESTABLISHED,
        TcpState.SYN_RECV,
        TcpState.TIME_WAIT,
    }


def test_ss_s_beside_a_table_counts_what_the_rows_do_not_show() -> None:
    text = (
        "# ss -s\n"
        "TCP:   30120 (estab 120, closed 29990, orphaned 3, timewait 29986)\n"
        "# ss -tan | head -3\n"
        "State      Recv-Q Send-Q Local Address:Port   Peer Address:Port\n"
        "TIME-WAIT  0      0      10.0.0.1:40000       10.0.0.9:6379\n"
        "TIME-WAIT  0      0      10.0.0.1:40001       10.0.0.9:6379\n"
    )
    snapshot = last(text)
    assert len(snapshot.sockets) == 2
    assert snapshot.state_counts["TIME_WAIT"] == 29986
    found = [f for f in diagnose(snapshot) if f.code == "time-wait-counted"]
    # Above the 28,232 ports of the default range: spread over several destinations, so a
    # build-up (warning), not ports shown to run out toward one.
    assert [(f.severity, f.count) for f in found] == [(Severity.WARNING, 29986)]
    assert "`ss -s`" in repr(found[0].evidence)  # the count is said to be the paste's own


def test_ss_s_in_a_loop_keeps_the_last_count_and_the_earlier_ones() -> None:
    text = "".join(
        f"$ ss -s\nTCP:   {n} (estab 1, closed 0, orphaned 0, timewait {n - 1})\n"
        for n in (10, 20, 30)
    )
    (tw,) = [c for c in last(text).reported if c.state is TcpState.TIME_WAIT]
    assert (tw.count, tw.earlier) == (29, (9, 19))


def test_lines_like_ss_s_that_are_not_it() -> None:
    assert match_ss_summary("TCP:   196 (estab zero, closed 195)") is None
    assert match_ss_summary("TCP  1153      1022      131") is None  # its Transport table
    assert match_ss_summary("TCP: inuse 5 orphan 0 tw 8 alloc 7 mem 2") is None  # sockstat


# --- ss -i / -m detail lines --------------------------------------------------------------------


def test_ss_m_drops_and_ss_i_sender_times_fill_the_model() -> None:
    sender, receiver = last(SS_TINM).sockets
    assert (sender.local.port, receiver.local.port) == (46774, 44573)
    assert (sender.drops, receiver.drops) == (0, 5)
    info = sender.tcp_info
    assert info is not None
    assert (info.busy_time_us, info.rwnd_limited_us, info.sndbuf_limited_us) == (
        2_340_000,
        416_000,
        0,  # not printed: ss shows a limit only when it is nonzero
    )
    assert (info.backoff, info.rto_us, info.total_retrans, info.unacked) == (3, 1_632_000, 4, 1)
    assert info.retransmits is None  # retrans:1/4's 1 is segments in flight, not timeouts
    other = receiver.tcp_info
    assert other is not None and other.busy_time_us is None  # never sent: unknown, not 0
    assert other.rwnd_limited_us is None and other.sndbuf_limited_us is None


def test_the_receivers_drops_are_diagnosed_from_the_paste() -> None:
    found = [f for f in diagnose(last(SS_TINM)) if f.code == "receive-drops"]
    assert [(f.count, f.severity) for f in found] == [(1, Severity.INFO)]
    assert "5" in found[0].summary


# --- lsof -J / -j -------------------------------------------------------------------------------


def lsof_view(text: str) -> dict[int | None, tuple[TcpState, int | None, tuple[int, ...]]]:
    return {s.inode: (s.state, s.recv_queue, s.pids) for s in last(text).sockets}


def test_lsof_json_lines_and_document_agree_with_ss_on_the_same_sockets() -> None:
    kernel = {s.inode: (s.state, s.recv_queue) for s in last(LSOF_SS).sockets}
    for text in (LSOF_J, LSOF_JL):
        snapshot = last(text)
        assert snapshot.host.source.startswith("lsof:")
        seen = lsof_view(text)
        assert len(seen) == 5  # fd 3 the listener, fds 4-6 three clients, fd 7 one accepted
        for inode, (state, recv_queue, pids) in seen.items():
            assert kernel[inode] == (state, recv_queue), inode  # as ss saw the same socket
            assert pids == (22482,)
        listener = next(s for s in snapshot.sockets if s.state is TcpState.LISTEN)
        assert (listener.recv_queue, listener.listen_backlog, listener.uid) == (2, None, 0)
        # lsof 4.99.7 prints no name for sockets: the address is unknown, never guessed
        assert {s.local.port for s in snapshot.sockets} == {None}
        assert {s.local.name for s in snapshot.sockets} == {"?"}
    names = {p.pid: p.name for p in last(LSOF_J).processes}
    assert names == {22482: "python3"}


def test_an_lsof_json_file_named_json_is_read_as_lsof_not_as_a_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "lsof.json"
    path.write_text(LSOF_J.splitlines()[1] + "\n", encoding="utf-8")  # the document alone
    snapshot = load(path)
    assert snapshot.host.source == f"lsof:{path}" and len(snapshot.sockets) == 5


def test_lsof_json_of_udp_and_a_broken_line() -> None:
    udp = '{"pid":1,"command":"x","fd":"3","type":"IPv4","protocol":"UDP","tcp_info":{"state":"Idle"}}'
    cut = '{"pid":1,"command":"x","fd":"3","type":"IPv4","protocol":"TCP","tcp_info":{"sta'
    snapshots = read_paste([LSOF_JL.splitlines()[1], udp, cut], "paste")
    (snapshot,) = snapshots
    assert len(snapshot.sockets) == 1  # the UDP row is passed over quietly
    assert any("line 3" in note or ":3:" in note for note in snapshot.notes), snapshot.notes


# --- macOS netstat -v -----------------------------------------------------------------------------


def test_macos_netstat_v_gives_the_pid_by_its_header_or_the_classic_row_shape() -> None:
    for text, pid, port in ((MACOS_V, 34548, 62981), (MACOS_V_GREP, 41657, 8080)):
        (sock,) = last(text).sockets
        assert (sock.state, sock.local.port, sock.pids) == (TcpState.LISTEN, port, (pid,))
        assert sock.owner_source is OwnerSource.FD and not sock.truncated


# The classic -v header (above) over rows in its shape whose addresses are 19 and 22 characters
# long (an IPv4 address and port never fill 22): a table without -A has 22-character address
# columns, so only the second may be cut.
WIDE = (
    "Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)     rhiwat shiwat    pid   epid  state    options\n"
    "tcp4       0      0  192.168.100.21.8080    10.20.30.40.51000      ESTABLISHED 131072 131072    872      0 0x0102 0x00000008\n"
    "tcp6       0      0  ::1.8080               2607:f8b0:4003:c.50001 ESTABLISHED 131072 131072    872      0 0x0102 0x00000008\n"
)


def test_a_19_character_address_without_dash_a_is_whole_and_22_may_be_cut() -> None:
    whole, cut = last(WIDE).sockets
    assert len("192.168.100.21.8080") == 19
    assert (whole.truncated, whole.local.port, whole.remote.port) == (False, 8080, 51000)
    assert cut.truncated  # a full 22-character column may have lost the end of its port
    assert whole.pids == cut.pids == (872,)


# The newest -v layout names the process with its pid (``caddy:610``; names may hold blanks).
# Rows as a test of the project "dev-certs" quotes macOS 15's netstat -anv (not a capture of ours).
NAMED = (
    "Active Internet connections (including servers)\n"
    "Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)          rxbytes      txbytes  rhiwat  shiwat          process:pid    state  options           gencnt    flags   flags1 usecnt rtncnt fltrs\n"
    "tcp46      0      0  *.443                  *.*                    LISTEN                 0            0  131072  131072      Helium Helper:5660   00100 00000006 00000000000c38ca 00000000 00000800      1      0 000000\n"
    "tcp4       0      0  127.0.0.1.443          127.0.0.1.50000        ESTABLISHED            0            0  131072  131072            caddy:610    00102 00000008 00000000000e4a9a 00000081 04000900      2      0 000000\n"
)


def test_the_named_process_pid_column_gives_name_and_pid() -> None:
    snapshot = last(NAMED)
    assert [(s.state, s.pids) for s in snapshot.sockets] == [
        (TcpState.LISTEN, (5660,)),
        (TcpState.ESTABLISHED, (610,)),
    ]
    assert {p.pid: p.name for p in snapshot.processes} == {5660: "Helium Helper", 610: "caddy"}


def test_macos_netstat_without_v_still_names_no_owner() -> None:
    (sock,) = last(
        "tcp4       0      0  127.0.0.1.8080         127.0.0.1.52870        CLOSE_WAIT\n"
    ).sockets
    assert sock.owner_source is OwnerSource.UNKNOWN and sock.pids == ()


# --- Windows netstat without a header, with names ------------------------------------------------


def test_windows_rows_without_a_header_keep_their_pid_and_names() -> None:
    snapshot = last(WINDOWS_NO_HEADER)
    assert snapshot.host.platform == "windows"
    assert [(s.state, s.local.name, s.local.port, s.pids) for s in snapshot.sockets] == [
        (TcpState.LISTEN, "pro1", 135, (860,)),  # epmap: Windows' name of port 135
        (TcpState.LISTEN, "pro1", 445, (4,)),
        (TcpState.LISTEN, "pro1", 1025, (908,)),
        (TcpState.LISTEN, "pro1", 3389, (908,)),
    ]


def test_windows_rows_with_resolved_peers_and_service_names() -> None:
    sockets = last(WINDOWS_NAMES).sockets
    assert [(s.remote.name, s.remote.port) for s in sockets] == [
        ("lb-140-82-113-25-iad", 443),
        ("a23-40-158-218", 80),
        ("LenovoSRV", 135),
        ("LenovoSRV", 49668),
    ]
    assert [s.local.port for s in sockets] == [60469, 64824, 64853, 64854]
    assert {s.owner_source for s in sockets} == {OwnerSource.UNKNOWN}  # no -o: no PID column


# Android's toybox netstat in an emulator shell (appium#14416's shape): no -n, so names for
# the addresses and the service, cut to the column; no PID column; a header with trailing
# blanks; the prompt is the device's.
TOYBOX = (
    "generic_x86:/ # netstat\n"
    "Active Internet connections (w/o servers)\n"
    "Proto Recv-Q Send-Q Local Address           Foreign Address         State      \n"
    "tcp        1      0 10.0.2.16:50918         yyz12s05-in-f4.1e:https CLOSE_WAIT \n"
    "tcp6       0      0 localhost:6790          localhost:41593         ESTABLISHED\n"
    "tcp6       0      0 localhost:41593         localhost:6790          ESTABLISHED\n"
)


def test_toybox_netstat_rows_keep_their_names_and_ports() -> None:
    snapshot = last(TOYBOX)
    by_state = {sock.state: sock for sock in snapshot.sockets}
    assert len(snapshot.sockets) == 3
    held = by_state[TcpState.CLOSE_WAIT]
    assert (held.recv_queue, held.remote.name, held.remote.port) == (
        1,
        "yyz12s05-in-f4.1e",
        443,
    )
    assert held.pids == ()  # toybox prints no owner
    ports = sorted(
        (sock.local.port, sock.remote.port)
        for sock in snapshot.sockets
        if sock.state is TcpState.ESTABLISHED
    )
    assert ports == [(6790, 41593), (41593, 6790)]
    assert all(
        sock.local.address.is_loopback
        for sock in snapshot.sockets
        if sock.state is TcpState.ESTABLISHED
    )
