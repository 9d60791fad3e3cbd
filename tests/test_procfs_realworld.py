"""The /proc/net/tcp parser over real copies from other people's hosts (fixtures/realworld/,
bytes unchanged from ../shared/realworld/; see its SOURCES.md for where each came from).

The expected per-state counts were counted independently of our parser, with
``awk 'NR>1 && $1 ~ /:$/ {print $4}' FILE | sort | uniq -c``.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path

import pytest

from tcphealth.errors import ProcParseError
from tcphealth.model import Endpoint, Family, Socket, TcpState, TimerKind
from tcphealth.sources.procfs import decode_address, decode_endpoint, parse_table

REALWORLD = Path(__file__).resolve().parent.parent / "fixtures" / "realworld"


def parse_file(name: str, family: Family, **kwargs: bool) -> tuple[list[Socket], int]:
    path = REALWORLD / name
    assert path.is_file(), f"fixture missing: {path}"  # a missing fixture must not pass
    with open(path, encoding="ascii", newline="") as handle:
        parsed = parse_table(handle, family, str(path), byteorder="little", **kwargs)
    assert parsed.skipped == []
    return parsed.sockets, parsed.duplicates


def counts(sockets: list[Socket]) -> dict[str, int]:
    return dict(Counter(sock.state.value for sock in sockets))


def test_two_captures_padded_rows() -> None:
    sockets, duplicates = parse_file(
        "jc_proc_net_tcp_two-captures_finwait1_closewait-rxq_padded.txt", Family.IPV4
    )
    assert duplicates == 0
    assert counts(sockets) == {
        "LISTEN": 4,
        "CLOSE_WAIT": 1,
        "ESTABLISHED": 1,
        "FIN_WAIT1": 6,
        "TIME_WAIT": 15,
    }
    (close_wait,) = [s for s in sockets if s.state is TcpState.CLOSE_WAIT]
    assert close_wait.local == Endpoint(ipaddress.IPv4Address("192.168.42.128"), 54352)
    assert close_wait.remote == Endpoint(ipaddress.IPv4Address("152.199.4.33"), 443)
    assert close_wait.recv_queue == 0x52  # 82 bytes nobody read (81 data + the FIN)
    assert close_wait.uid == 1000
    assert close_wait.inode == 149098
    assert close_wait.timer is TimerKind.KEEPALIVE
    assert close_wait.timer_seconds == pytest.approx(0xA6F / 100)

    fin_wait1 = [s for s in sockets if s.state is TcpState.FIN_WAIT1]
    # Orphaned: closed by the application (inode 0), the FIN unacknowledged (1 byte queued),
    # the retransmit timer running.
    assert {(s.send_queue, s.timer, s.inode, s.is_orphan) for s in fin_wait1} == {
        (1, TimerKind.RETRANSMIT, 0, True)
    }
    time_wait = [s for s in sockets if s.state is TcpState.TIME_WAIT]
    # TIME_WAIT rows print 0 as a placeholder uid: unknown, not root.
    assert {s.uid for s in time_wait} == {None}
    assert {s.timer for s in time_wait} == {TimerKind.TIME_WAIT}
    assert min(s.timer_seconds or 0 for s in time_wait) == pytest.approx(0x799 / 100)


def test_ipv6_timewait_global_addresses() -> None:
    sockets, _ = parse_file("jc_proc_net_tcp6_global-ipv6_timewait.txt", Family.IPV6)
    assert counts(sockets) == {"LISTEN": 1, "TIME_WAIT": 7}
    locals_ = {s.local.address for s in sockets if s.state is TcpState.TIME_WAIT}
    assert locals_ == {ipaddress.IPv6Address("2601:646:9e01:f100::3a4c")}
    listener = next(s for s in sockets if s.state is TcpState.LISTEN)
    assert str(listener.local) == "[::]:22"


def test_node_exporter_padded_header_and_keepalive_timer() -> None:
    sockets, _ = parse_file("node_exporter_proc_net_tcpstat_padded_txq.txt", Family.IPV4)
    assert counts(sockets) == {"LISTEN": 1, "ESTABLISHED": 1}
    established = next(s for s in sockets if s.state is TcpState.ESTABLISHED)
    assert (established.send_queue, established.recv_queue) == (0x15, 1)
    assert established.timer is TimerKind.KEEPALIVE
    assert established.timer_seconds == pytest.approx(0xAC99B / 100)  # 7068.75 s
    assert str(established.local) == "10.0.2.15:22"


def test_duplicate_row_of_one_socket_counts_once() -> None:
    # Rows 1 and 2 are the same listener (same 4-tuple, same inode) read twice with different
    # queue values; row 0 is another address on the same inode number, kept.
    sockets, duplicates = parse_file(
        "prometheus-procfs_fixture_proc_net_tcp_queues.txt", Family.IPV4
    )
    assert duplicates == 1
    assert len(sockets) == 2
    assert [str(s.local) for s in sockets] == ["10.0.0.5:22", "0.0.0.0:22"]
    assert (sockets[1].send_queue, sockets[1].recv_queue) == (1, 0)  # the first row is kept


def test_kernel_pointers_zeroed_and_unpadded_lines() -> None:
    sockets, _ = parse_file(
        "teleport-careers_proc_net_tcp_aws-host_timewait_kptr-zeroed.txt", Family.IPV4
    )
    assert counts(sockets) == {"LISTEN": 10, "ESTABLISHED": 7, "TIME_WAIT": 4}
    metadata = [s for s in sockets if str(s.remote) == "169.254.169.254:80"]
    assert len(metadata) == 3
    assert {str(s.local.address) for s in metadata} == {"10.162.15.225"}


def test_udp_style_table_is_refused_by_name() -> None:
    path = REALWORLD / "prometheus-procfs_fixture_proc_net_tcp6_udp-style-header_linklocal.txt"
    assert path.is_file()
    with open(path) as handle, pytest.raises(ProcParseError) as caught:
        parse_table(handle, Family.IPV6, str(path))
    assert caught.value.line == 1
    assert "UDP table" in str(caught.value)
    assert str(caught.value).startswith(f"{path}:1: ")


def test_ipv6_byte_order_vectors() -> None:
    """The known answers in the eminence/procfs vectors: four host-order words, not one
    reversed 128-bit number."""
    text = (
        REALWORLD / "eminence-procfs_tcp6_ipv6-byteorder_vectors_old-bug-vs-fixed.txt"
    ).read_text()
    assert "F804012AE83110010000000002000000:8175" in text  # the vector is really in the file
    local = decode_endpoint("F804012AE83110010000000002000000:8175", "little")
    remote = decode_endpoint("5014002A18080140000000000E200000:0050", "little")
    assert local == Endpoint(ipaddress.IPv6Address("2a01:4f8:110:31e8::2"), 33141)
    assert remote == Endpoint(ipaddress.IPv6Address("2a00:1450:4001:818::200e"), 80)
    assert str(remote.address) != "0:e20::140:1808:2a:5014"  # the old whole-reversal bug
    assert decode_address("5014002A14080140000000000E200000", "little") == ipaddress.IPv6Address(
        "2a00:1450:4001:814::200e"
    )
    assert decode_address("B80D01200000000067452301EFCDAB89", "little") == ipaddress.IPv6Address(
        "2001:db8::123:4567:89ab:cdef"
    )
    assert decode_address("0100007F", "little") == ipaddress.IPv4Address("127.0.0.1")
    assert decode_address("7F000001", "big") == ipaddress.IPv4Address("127.0.0.1")
    with pytest.raises(ValueError):
        decode_address("1234", "little")


def test_link_local_and_v4_mapped_addresses() -> None:
    link_local = decode_address("000080FE00000000FFADE15609667CFE", "little")
    assert link_local == ipaddress.IPv6Address("fe80::56e1:adff:fe7c:6609")
    mapped = decode_endpoint("0000000000000000FFFF00000100007F:1F90", "little")
    assert mapped.ipv4_mapped == ipaddress.IPv4Address("127.0.0.1")
    assert str(mapped) == "[::ffff:127.0.0.1]:8080"


# sha256 prefixes recorded in ../shared/realworld/SOURCES.md at collection time: the copies in
# fixtures/realworld/ must stay byte-for-byte what was collected (CRLF, padding, cut lines).
COLLECTED_SHA256 = {
    "eminence-procfs_tcp6_ipv6-byteorder_vectors_old-bug-vs-fixed.txt": "159d4e869b12",
    "jc_macos-10.14.6_netstat-An_closewait_truncated-ports.txt": "0889b0e7511a",
    "jc_proc_net_tcp6_global-ipv6_timewait.txt": "0ea80de5a904",
    "jc_proc_net_tcp_two-captures_finwait1_closewait-rxq_padded.txt": "1c774522918a",
    "jc_windows10_netstat-aonb_crlf_closewait-searchapp.txt": "9c0864ca8fd9",
    "moooofly-lls_k8s-node2_ss_synrecv-closewait_accept-queue-129of128.txt": "7195bbdfd7ed",
    "moooofly-lls_k8s-node_ss_kube-proxy-accept-queue-full_closewait-no-owner.txt": "84e48e67efc3",
    "moooofly-lls_k8s-pod_ss_closewait-to-codis19000_3-samples.txt": "63b6409047d0",
    "moooofly-lls_lab_ss-natp-o_timers_closewait-unaccepted_finwait2-timewait-timer_synsent-collision.txt": "677ec358fbf0",  # noqa: E501
    "moooofly-lls_prometheus_netstat-lsof_synsent-9100_fd-1019-of-1024.txt": "710b21a88cb2",
    "moooofly-lls_tengine_netstat-ss_timewait-pinned-65536-tw_buckets_kafka9092.txt": "45415964f7ab",  # noqa: E501
    "node_exporter_proc_net_tcpstat_padded_txq.txt": "ed759bf6e389",
    "prometheus-procfs_fixture_proc_net_tcp6_udp-style-header_linklocal.txt": "0ef1a7cd6727",
    "prometheus-procfs_fixture_proc_net_tcp_queues.txt": "c953a8976a39",
    "teleport-careers_proc_net_tcp_aws-host_timewait_kptr-zeroed.txt": "d2dec111d9f3",
}


@pytest.mark.parametrize("name", sorted(COLLECTED_SHA256))
def test_realworld_copy_is_byte_for_byte_what_was_collected(name: str) -> None:
    import hashlib

    path = REALWORLD / name
    assert path.is_file(), f"fixture missing: {path}"
    assert hashlib.sha256(path.read_bytes()).hexdigest()[:12] == COLLECTED_SHA256[name]


def test_no_realworld_copy_without_a_recorded_checksum() -> None:
    copies = {p.name for p in REALWORLD.glob("*.txt")}
    assert copies == set(COLLECTED_SHA256)
