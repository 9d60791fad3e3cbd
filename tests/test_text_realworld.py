"""Pasted ss/netstat output and /proc copies from real incidents (fixtures/realworld/, bytes
unchanged from ../shared/realworld/, see its SOURCES.md), read through ``sources.load`` and
``sources.load_series``.

Every expected count was made independently of our parser, with the shell one-liner in each
test's docstring, run in fixtures/realworld/.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path

import pytest

from tcphealth.errors import InputError, ProcParseError
from tcphealth.model import Family, OwnerSource, Snapshot, TcpState, TimerKind
from tcphealth.sources import load, load_series

REALWORLD = Path(__file__).resolve().parent.parent / "fixtures" / "realworld"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "realworld"


def fixture(name: str) -> Path:
    path = REALWORLD / name
    assert path.is_file(), f"fixture missing: {path}"  # a missing fixture must not pass
    return path


def counts(snapshot: Snapshot) -> dict[str, int]:
    return dict(Counter(sock.state.value for sock in snapshot.sockets))


KUBE = "moooofly-lls_k8s-node_ss_kube-proxy-accept-queue-full_closewait-no-owner.txt"
KUBE2 = "moooofly-lls_k8s-node2_ss_synrecv-closewait_accept-queue-129of128.txt"
POD = "moooofly-lls_k8s-pod_ss_closewait-to-codis19000_3-samples.txt"
LAB = "moooofly-lls_lab_ss-natp-o_timers_closewait-unaccepted_finwait2-timewait-timer_synsent-collision.txt"
PROMETHEUS = "moooofly-lls_prometheus_netstat-lsof_synsent-9100_fd-1019-of-1024.txt"
TENGINE = "moooofly-lls_tengine_netstat-ss_timewait-pinned-65536-tw_buckets_kafka9092.txt"
MACOS = "jc_macos-10.14.6_netstat-An_closewait_truncated-ports.txt"
WINDOWS = "jc_windows10_netstat-aonb_crlf_closewait-searchapp.txt"
PROC_TWO = "jc_proc_net_tcp_two-captures_finwait1_closewait-rxq_padded.txt"


@pytest.mark.parametrize("name", sorted(p.name for p in REALWORLD.glob("*.txt")))
def test_fixture_is_the_shared_file_byte_for_byte(name: str) -> None:
    shared = SHARED / name
    if not shared.is_file():
        pytest.skip(f"{shared} is not on this machine")
    assert (REALWORLD / name).read_bytes() == shared.read_bytes()


LISTINGS = [
    KUBE,
    KUBE2,
    POD,
    LAB,
    PROMETHEUS,
    TENGINE,
    MACOS,
    WINDOWS,
    PROC_TWO,
    "jc_proc_net_tcp6_global-ipv6_timewait.txt",
    "node_exporter_proc_net_tcpstat_padded_txq.txt",
    "prometheus-procfs_fixture_proc_net_tcp_queues.txt",
    "teleport-careers_proc_net_tcp_aws-host_timewait_kptr-zeroed.txt",
]


@pytest.mark.parametrize("name", LISTINGS)
def test_every_tcp_listing_parses_without_skipping_a_line(name: str) -> None:
    for snapshot in load_series(fixture(name)):
        assert snapshot.skipped_lines == 0, snapshot.notes
        assert snapshot.sockets or snapshot.state_counts


def test_every_shared_file_is_listed_here_or_refused() -> None:
    refused = {
        "eminence-procfs_tcp6_ipv6-byteorder_vectors_old-bug-vs-fixed.txt",  # Rust source
        "prometheus-procfs_fixture_proc_net_tcp6_udp-style-header_linklocal.txt",  # UDP
    }
    assert {p.name for p in REALWORLD.glob("*.txt")} == set(LISTINGS) | refused


def test_kube_proxy_node_listeners_full_and_close_wait_unowned() -> None:
    """``awk '$1=="LISTEN"{print $4}' F | sort -u | wc -l`` -> 33 listeners;
    ``awk '$1=="LISTEN" && $2==129 && $3==128 {print $4}' F | sort -u | wc -l`` -> 19 full;
    ``awk '$1=="CLOSE-WAIT" && $4 ~ /:30720$/ && $0 !~ /users:/' F | wc -l`` -> 100;
    ``awk '$1=="CLOSE-WAIT"{print $2}' F | sort -n | sed -n '1p;$p'`` -> 1, 103876."""
    series = load_series(fixture(KUBE))
    # two `netstat -n | awk` summaries: the second opens the capture the listings join
    assert len(series) == 2
    assert series[0].state_counts == {"CLOSE_WAIT": 2996, "ESTABLISHED": 16, "TIME_WAIT": 13}
    snapshot = load(fixture(KUBE))
    assert snapshot.sockets == series[-1].sockets
    assert any("2 captures were found" in note for note in snapshot.notes)
    assert counts(snapshot) == {"LISTEN": 33, "CLOSE_WAIT": 100}
    assert snapshot.state_counts == {"CLOSE_WAIT": 3083, "ESTABLISHED": 19, "TIME_WAIT": 9}
    assert snapshot.host.hostname == "ip-172-1-57-200"
    assert snapshot.host.source.endswith(f":{fixture(KUBE)}")
    assert "ss" in snapshot.host.source.split(":")[0]
    assert snapshot.host.privileged is True  # root@ prompt
    assert snapshot.sysctls.somaxconn == 128
    assert snapshot.sysctls.tcp_abort_on_overflow == 0
    assert snapshot.sysctls.tcp_max_tw_buckets is None  # not in the paste: unknown, not 0

    listeners = [s for s in snapshot.sockets if s.state is TcpState.LISTEN]
    full = [s for s in listeners if s.recv_queue == 129]
    assert len(full) == 19
    assert {(s.recv_queue, s.listen_backlog) for s in full} == {(129, 128)}
    assert {s.send_queue for s in listeners} == {None}  # Send-Q of a listener is its backlog
    assert {s.pids for s in listeners} == {(1448,)}
    assert {(p.pid, p.name) for p in snapshot.processes} == {(1448, "kube-proxy")}
    (on_30720,) = [s for s in listeners if s.local.port == 30720]
    assert str(on_30720.local) == "[::]:30720"
    assert on_30720.family is Family.IPV6

    close_wait = [s for s in snapshot.sockets if s.state is TcpState.CLOSE_WAIT]
    assert {s.local.port for s in close_wait} == {30720}
    # no users:() on any of them: no descriptor holds them; they wait in 30720's accept queue
    assert {s.owner_source for s in close_wait} == {OwnerSource.LISTENER}
    assert {s.pids for s in close_wait} == {(1448,)}
    assert {s.inode for s in close_wait} == {None}  # ss ran without -e
    assert {s.timer for s in close_wait} == {None}  # nor -o: unknown, not "no timer"
    assert min(s.recv_queue or 0 for s in close_wait) == 1
    assert max(s.recv_queue or 0 for s in close_wait) == 103876
    assert close_wait[0].local.ipv4_mapped == ipaddress.IPv4Address("172.1.57.200")


def test_kube_node2_syn_recv_and_close_wait_on_a_full_listener() -> None:
    """``awk '$1 ~ /^(LISTEN|SYN-RECV|CLOSE-WAIT)$/ && NF>=5 {print $1,$4,$5}' F | sort -u |
    awk '{print $1}' | sort | uniq -c`` -> 13 LISTEN, 12 SYN-RECV, 4 CLOSE-WAIT."""
    (snapshot,) = load_series(fixture(KUBE2))
    assert counts(snapshot) == {"LISTEN": 13, "SYN_RECV": 12, "CLOSE_WAIT": 4}
    assert snapshot.state_counts["SYN_RECV"] == 12
    assert snapshot.state_counts["CLOSE_WAIT"] == 577
    on_31493 = [s for s in snapshot.sockets if s.local.port == 31493]
    listener = next(s for s in on_31493 if s.state is TcpState.LISTEN)
    assert (listener.recv_queue, listener.listen_backlog) == (129, 128)
    waiting = [s for s in on_31493 if s.state is not TcpState.LISTEN]
    assert {s.owner_source for s in waiting} == {OwnerSource.LISTENER}
    assert {s.pids for s in waiting} == {(1515,)}


def test_lab_series_timers_and_suspended_listener() -> None:
    """Blocks between ``---`` lines with rows:
    ``awk '/^---$/{if(n)c++; n=0; next} /^(LISTEN|ESTAB|CLOSE-WAIT|FIN-WAIT-2|SYN-SENT) /{n=1}
    END{if(n)c++; print c}' F`` -> 22. Timers: ``grep -o 'timer:([^)]*)' F | sort | uniq -c``."""
    series = load_series(fixture(LAB))
    assert len(series) == 22
    timers = [
        (s.timer, s.timer_seconds)
        for snapshot in series
        for s in snapshot.sockets
        if s.state is TcpState.FIN_WAIT2
    ]
    seconds = sorted(t for _, t in timers if t is not None)
    assert seconds == pytest.approx([0.044, 0.052, 1.076, 58, 59, 59])
    assert {kind for kind, _ in timers} == {TimerKind.TIME_WAIT}
    fin_wait2 = next(s for s in series[7].sockets if s.state is TcpState.FIN_WAIT2)
    assert (fin_wait2.timer, fin_wait2.timer_seconds) == (TimerKind.TIME_WAIT, 59.0)
    assert fin_wait2.owner_source is OwnerSource.NONE  # orphaned: the client closed it
    assert fin_wait2.retransmits is None  # the count of a timewait timer is a placeholder
    syn_sent = next(
        s for snapshot in series for s in snapshot.sockets if s.state is TcpState.SYN_SENT
    )
    assert (syn_sent.timer, syn_sent.timer_seconds) == (TimerKind.RETRANSMIT, 0.696)
    assert syn_sent.retransmits == 0
    assert syn_sent.pids == (14851,)
    # ss -o prints timer:(…) only while one runs: the others have none (not "unknown")
    listener = series[-1].sockets[0]
    assert listener.timer is TimerKind.NONE

    last = load(fixture(LAB))
    assert counts(last) == {"LISTEN": 1, "CLOSE_WAIT": 1}
    listener, close_wait = last.sockets
    assert (listener.recv_queue, listener.listen_backlog) == (2, 1)  # backlog 1 holds 2
    assert listener.pids == (11637,)
    assert close_wait.recv_queue == 1  # only the FIN: nothing was ever read
    assert close_wait.owner_source is OwnerSource.LISTENER
    assert close_wait.pids == (11637,)
    assert last.host.hostname == "ubuntu-1604"
    assert any("22 captures were found" in note for note in last.notes)


def test_pod_close_wait_samples_are_a_series() -> None:
    """4 ``ss -na | awk`` summaries and 3 ``ss -na | grep CLOSE-WAIT`` samples; the first
    sample joins the last summary: 6 captures. The last capture (from the third sample on):
    ``tail -n +102 F | awk '{i=($1=="tcp")?2:1} $i ~ /^(ESTAB|CLOSE-WAIT)$/ {print $i,$(i+3),
    $(i+4)}' | sort -u | awk '{print $1}' | sort | uniq -c`` -> 36 CLOSE-WAIT, 53 ESTAB."""
    series = load_series(fixture(POD))
    assert len(series) == 6
    assert [s.state_counts.get("CLOSE_WAIT") for s in series[:4]] == [43, 35, 31, 22]
    samples = [{(s.local, s.remote) for s in snapshot.sockets} for snapshot in series[3:]]
    assert [len(sample) for sample in samples[:2]] == [35, 31]
    assert samples[0] != samples[1]  # the membership changes between samples
    last = series[-1]
    assert counts(last) == {"CLOSE_WAIT": 36, "ESTABLISHED": 53}
    https = [s for s in last.sockets if s.remote.port == 443]
    assert [s.recv_queue for s in https] == [32]
    assert {s.owner_source for s in last.sockets} == {OwnerSource.UNKNOWN}  # no -p
    assert last.attribution.attempted is False


def test_prometheus_netstat_series_limits_and_fd_count() -> None:
    """``grep -c 'netstat -antp' F`` -> 12 runs after ``grep -c '++S' F`` -> 6 summaries;
    the first run joins the last summary: 17 captures. Last run:
    ``tac F | awk '/netstat -antp/{exit} $1=="tcp"{print $6}' | sort | uniq -c``."""
    series = load_series(fixture(PROMETHEUS))
    assert len(series) == 17
    last = series[-1]
    assert counts(last) == {"SYN_SENT": 2, "ESTABLISHED": 1}
    assert last.host.source.startswith("netstat-linux:")
    syn_sent = [s for s in last.sockets if s.state is TcpState.SYN_SENT]
    assert {(s.send_queue, s.remote.port, s.pids) for s in syn_sent} == {(1, 9100, (22347,))}
    processes = {p.pid: p for p in last.processes}
    assert processes[22347].name == "prometheus"
    assert (processes[22347].fd_soft_limit, processes[22347].fd_hard_limit) == (1024, 4096)
    assert processes[13091].name == "sshd: deploye"  # netstat cut the name; kept as printed
    # `ll /proc/15902/fd | wc -l` printed 1019: 'total', '.' and '..' are not descriptors
    assert processes[15902].open_fds == 1016
    assert processes[22347].open_fds is None  # lsof's listing is elided: not counted


def test_tengine_time_wait_summaries_and_sysctls() -> None:
    """``grep -c '++S' F`` -> 10 summaries; ``grep '^TIME_WAIT' F | tail -1`` -> 56889."""
    series = load_series(fixture(TENGINE))
    assert len(series) == 10
    assert [s.state_counts["TIME_WAIT"] for s in series] == [
        65547, 65536, 57737, 60184, 62441, 65424, 65540, 65536, 65536, 56889,
    ]  # fmt: skip
    last = load(fixture(TENGINE))
    assert last.sockets == ()  # only summaries and uniq -c counts: no socket rows
    assert last.state_counts == {"ESTABLISHED": 274, "SYN_SENT": 13, "TIME_WAIT": 56889}
    assert last.sysctls.tcp_max_tw_buckets == 65536
    assert last.sysctls.ip_local_port_range == (32768, 61000)
    assert last.sysctls.ephemeral_port_count == 28233
    assert last.sysctls.somaxconn == 128
    assert last.sysctls.tcp_tw_reuse == 0
    assert last.skipped_lines == 0  # `uniq -c` output and prose are not broken rows


def test_macos_netstat_truncated_ports() -> None:
    """In the Internet section (lines 3-140):
    ``sed -n 3,140p F | awk '$3 ~ /^tcp/ {print $NF}' | sort | uniq -c`` -> 43 ESTABLISHED,
    6 CLOSE_WAIT; ``sed -n 3,140p F | awk '$3 ~ /^tcp/ && (length($6)>=18 || length($7)>=18)'
    | wc -l`` -> 46 rows with an 18-character (possibly cut) address."""
    snapshot = load(fixture(MACOS))
    assert counts(snapshot) == {"ESTABLISHED": 43, "CLOSE_WAIT": 6}
    assert snapshot.host.platform == "darwin"
    assert snapshot.host.source.startswith("netstat-macos:")
    assert sum(s.truncated for s in snapshot.sockets) == 46
    truncation_notes = [n for n in snapshot.notes if "cut short" in n]
    assert len(truncation_notes) == 1 and "46 row(s)" in truncation_notes[0]
    close_wait = [s for s in snapshot.sockets if s.state is TcpState.CLOSE_WAIT]
    assert sorted(s.recv_queue or 0 for s in close_wait) == [0, 0, 0, 0, 31, 31]
    cut = [s for s in close_wait if str(s.remote) == "35.235.123.194:555"]
    assert len(cut) == 3 and all(s.truncated for s in cut)  # really port 5555
    whole = next(s for s in close_wait if str(s.local) == "127.0.0.1:9592")
    assert not whole.truncated
    assert {s.owner_source for s in snapshot.sockets} == {OwnerSource.UNKNOWN}
    assert {s.timer for s in snapshot.sockets} == {None}
    assert {s.family for s in snapshot.sockets if s.local.address.version == 6} == {Family.IPV6}


def test_windows_netstat_close_wait_searchapp() -> None:
    """``awk '$1=="TCP"{print $4}' F | sort | uniq -c`` -> 51 LISTENING, 54 ESTABLISHED,
    6 CLOSE_WAIT, 3 TIME_WAIT; ``awk '$1=="TCP" && $4=="CLOSE_WAIT"{print $5}' F | uniq -c`` ->
    6 x 27568; ``grep -A1 CLOSE_WAIT F | grep -c SearchApp.exe`` -> 6;
    ``awk '$1=="TCP" && $2 ~ /^\\[/' F | wc -l`` -> 15 IPv6."""
    snapshot = load(fixture(WINDOWS))
    assert counts(snapshot) == {"LISTEN": 51, "ESTABLISHED": 54, "CLOSE_WAIT": 6, "TIME_WAIT": 3}
    assert snapshot.host.platform == "windows"
    close_wait = [s for s in snapshot.sockets if s.state is TcpState.CLOSE_WAIT]
    assert {s.pids for s in close_wait} == {(27568,)}
    assert {s.remote.port for s in close_wait} == {443, 80}
    names = {p.pid: p.name for p in snapshot.processes}
    assert names[27568] == "SearchApp.exe"
    assert names[4] is None  # "Can not obtain ownership information"
    assert names[1712] == "svchost.exe"  # under the service name line "RpcSs"
    time_wait = [s for s in snapshot.sockets if s.state is TcpState.TIME_WAIT]
    assert {(s.pids, s.owner_source) for s in time_wait} == {((), OwnerSource.NONE)}
    assert sum(s.family is Family.IPV6 for s in snapshot.sockets) == 15
    assert {s.recv_queue for s in snapshot.sockets} == {None}  # Windows shows no queues
    assert {s.uid for s in snapshot.sockets} == {None}


def test_proc_copy_two_captures() -> None:
    """``awk '$1=="0:"{c++} $1 ~ /:$/ {print c, $4}' F | sort | uniq -c``."""
    series = load_series(fixture(PROC_TWO))
    assert [counts(s) for s in series] == [
        {"LISTEN": 3, "CLOSE_WAIT": 1},
        {"LISTEN": 1, "FIN_WAIT1": 6, "TIME_WAIT": 15, "ESTABLISHED": 1},
    ]
    last = load(fixture(PROC_TWO))
    assert last.sockets == series[1].sockets
    assert last.notes[0].endswith("2 captures were found (a repeated header, command or '---'); "
                                  "only the last is diagnosed, the earlier ones compared "
                                  "with it (what stayed, what kept resending)")  # fmt: skip
    assert last.host.source == f"proc:{fixture(PROC_TWO)}"
    assert last.attribution.attempted is False
    assert {s.owner_source for s in last.sockets} == {OwnerSource.UNKNOWN}


def test_proc_copy_family_from_address_width() -> None:
    snapshot = load(fixture("jc_proc_net_tcp6_global-ipv6_timewait.txt"))
    assert {s.family for s in snapshot.sockets} == {Family.IPV6}
    assert counts(snapshot) == {"LISTEN": 1, "TIME_WAIT": 7}


def test_udp_style_proc_copy_is_refused_with_a_clear_message() -> None:
    path = fixture("prometheus-procfs_fixture_proc_net_tcp6_udp-style-header_linklocal.txt")
    with pytest.raises(ProcParseError) as caught:
        load(path)
    assert str(caught.value) == (
        f"{path}:1: this is a UDP table (its header ends in 'drops', as /proc/net/udp does), "
        "not TCP"
    )


def test_source_code_is_not_a_listing() -> None:
    path = fixture("eminence-procfs_tcp6_ipv6-byteorder_vectors_old-bug-vs-fixed.txt")
    with pytest.raises(InputError, match="no TCP socket table found"):
        load(path)
