"""A copied /proc tree (built here in a temporary directory) parses like the live one:
sockets, attribution through /proc/PID/fd, listener attribution, sysctls and counters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcphealth.model import OwnerSource, TcpState
from tcphealth.sources import procfs

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000081 00:00000000 00000000   999        0 100 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C001 08 00000000:00000001 00:00000000 00000000   999        0 0 1 0 20 4 0 10 -1
   2: 0100007F:1F90 0100007F:C002 03 00000000:00000000 01:0000012C 00000001   999        0 0 0 0
   3: 0100007F:1F90 0100007F:C003 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0
   4: 0100007F:C004 0100007F:01BB 01 00000000:00000000 00:00000000 00000000     0        0 200 1 0 20 4 0 10 -1
   5: 0100007F:C005 0100007F:01BB 01 00000000:00000000 00:00000000 00000000     0        0 300 1 0 20 4 0 10 -1
   6: 0100007F:C006 0100007F:01BB 04 00000001:00000000 01:00000032 00000002     0        0 0 3 0 20 4 0 10 -1
   7: 0100007F:C007 0100007F:1F91 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0 20 4 0 10 -1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 400 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0 20 4 0 10 -1
"""
NETSTAT = """\
TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPTimeWaitOverflow
TcpExt: 3 1234 1300 0
IpExt: InNoRoutes
IpExt: 0
"""
SNMP = """\
Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm ActiveOpens RetransSegs CurrEstab
Tcp: 1 77 5 4
"""
SOCKSTAT = """\
sockets: used 120
TCP: inuse 5 orphan 1 tw 1 alloc 9 mem 3
UDP: inuse 0 mem 0
"""
LIMITS = """\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 4096                 files
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def add_process(root: Path, pid: int, name: str, inodes: list[int], uid: int = 0) -> None:
    base = root / str(pid)
    write(base / "comm", f"{name}\n")
    write(base / "cmdline", f"/usr/bin/{name}\0--serve\0")
    write(base / "status", f"Name:\t{name}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    write(base / "limits", LIMITS)
    (base / "fd").mkdir()
    os.symlink("/dev/null", base / "fd" / "0")
    for number, inode in enumerate(inodes, start=3):
        os.symlink(f"socket:[{inode}]", base / "fd" / str(number))


@pytest.fixture
def proc_tree(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    write(root / "net" / "tcp", TCP)
    write(root / "net" / "tcp6", TCP6)
    write(root / "net" / "netstat", NETSTAT)
    write(root / "net" / "snmp", SNMP)
    write(root / "net" / "sockstat", SOCKSTAT)
    sysctls = {
        "sys/net/ipv4/tcp_fin_timeout": "60",
        "sys/net/ipv4/tcp_max_tw_buckets": "65536",
        "sys/net/ipv4/ip_local_port_range": "32768\t60999",
        "sys/net/core/somaxconn": "4096",
        "sys/net/ipv4/tcp_syncookies": "1",
        "sys/kernel/hostname": "copied-host",
        "sys/kernel/osrelease": "6.1.0-test",
    }
    for relative, value in sysctls.items():
        write(root / relative, value + "\n")
    add_process(root, 10, "server", [100, 400], uid=999)
    add_process(root, 20, "client", [200, 300])
    add_process(root, 21, "client-child", [300])  # shares inode 300 after a fork
    (root / "30").mkdir()  # a process that exited: no fd directory any more
    (root / "self").mkdir()  # not a pid
    return root


def test_copied_tree_sockets_and_owners(proc_tree: Path) -> None:
    snap = procfs.collect(proc_tree)
    by_remote_port = {(s.state, s.remote.port): s for s in snap.sockets}

    listener = next(s for s in snap.sockets if s.inode == 100)
    assert listener.state is TcpState.LISTEN
    assert (listener.pids, listener.owner_source) == ((10,), OwnerSource.FD)
    assert listener.recv_queue == 0x81  # the accept-queue length: 129

    # Not yet accepted (inode 0) on the listener's port: credited to the listener's process.
    unaccepted = by_remote_port[(TcpState.CLOSE_WAIT, 0xC001)]
    assert (unaccepted.pids, unaccepted.owner_source) == ((10,), OwnerSource.LISTENER)
    handshake = by_remote_port[(TcpState.SYN_RECV, 0xC002)]
    assert (handshake.pids, handshake.owner_source) == ((10,), OwnerSource.LISTENER)
    assert handshake.retransmits == 1
    # TIME_WAIT on the same port was closed by someone: nobody holds it, no listener credit.
    time_wait = by_remote_port[(TcpState.TIME_WAIT, 0xC003)]
    assert (time_wait.pids, time_wait.owner_source) == ((), OwnerSource.NONE)
    assert time_wait.timer_seconds == 60.0

    shared = next(s for s in snap.sockets if s.inode == 300)
    assert (shared.pids, shared.owner_source) == ((20, 21), OwnerSource.FD)

    orphan = by_remote_port[(TcpState.FIN_WAIT1, 443)]
    assert (orphan.pids, orphan.owner_source, orphan.retransmits) == ((), OwnerSource.NONE, 2)

    # ESTABLISHED, inode 0, on port 0xC007: no listener there, so not credited to anyone.
    stray = by_remote_port[(TcpState.ESTABLISHED, 0x1F91)]
    assert stray.owner_source is OwnerSource.NONE

    # The v4-mapped peer of a dual-stack listener, not yet accepted.
    mapped = next(s for s in snap.sockets if s.local.port == 80 and s.state is TcpState.ESTABLISHED)
    assert str(mapped.local) == "[::ffff:127.0.0.1]:80"
    assert mapped.pids == (10,)


def test_copied_tree_processes_sysctls_counters(proc_tree: Path) -> None:
    snap = procfs.collect(proc_tree)
    processes = {p.pid: p for p in snap.processes}
    assert sorted(processes) == [10, 20, 21]
    server = processes[10]
    assert server.name == "server"
    assert server.cmdline == ("/usr/bin/server", "--serve")
    assert (server.uid, server.open_fds, server.fd_soft_limit, server.fd_hard_limit) == (
        999,
        3,
        1024,
        4096,
    )
    assert snap.sysctls.tcp_fin_timeout == 60
    assert snap.sysctls.ip_local_port_range == (32768, 60999)
    assert snap.sysctls.ephemeral_port_count == 28232
    assert snap.sysctls.somaxconn == 4096
    assert snap.sysctls.tcp_syn_retries is None  # not in this copy: unknown, not 0
    assert snap.counters["TcpExt.ListenOverflows"] == 1234
    assert snap.counters["Tcp.RetransSegs"] == 5
    assert snap.counters["sockstat.TCP.tw"] == 1
    assert snap.counters["sockstat.TCP.orphan"] == 1
    assert "IpExt.InNoRoutes" not in snap.counters
    assert (snap.host.hostname, snap.host.kernel) == ("copied-host", "6.1.0-test")
    assert snap.host.source == f"procfs:{proc_tree}"
    assert snap.attribution.processes_scanned == 3
    assert snap.attribution.processes_vanished == 1
    assert snap.attribution.complete


def test_forbidden_process_is_counted_and_noted(
    proc_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root can read every fd directory, so simulate another user's process refusing us.
    real_listdir = os.listdir

    def listdir(path: str) -> list[str]:
        if path.endswith("/20/fd"):
            raise PermissionError(13, "Permission denied", path)
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    snap = procfs.collect(proc_tree)
    assert snap.attribution.processes_forbidden == 1
    assert snap.attribution.sockets_unseen == 1  # inode 200, held only by pid 20
    assert not snap.attribution.complete
    unseen = next(s for s in snap.sockets if s.inode == 200)
    assert unseen.owner_source is OwnerSource.UNSEEN
    assert unseen.pids == ()
    still_seen = next(s for s in snap.sockets if s.inode == 300)
    assert still_seen.pids == (21,)
    assert any("not readable" in note and "run as root" in note for note in snap.notes)


def test_without_processes_nothing_is_attributed(proc_tree: Path) -> None:
    snap = procfs.collect(proc_tree, with_processes=False)
    assert snap.processes == ()
    assert {s.owner_source for s in snap.sockets} == {OwnerSource.UNKNOWN}
    assert not snap.attribution.attempted


def test_missing_tcp_table_is_an_input_error(tmp_path: Path) -> None:
    from tcphealth.errors import ProcParseError

    (tmp_path / "net").mkdir()
    with pytest.raises(ProcParseError, match="does not exist"):
        procfs.collect(tmp_path)
