"""CLOSE_WAIT: held by a process (three readings of the receive queue), never accepted, or
held by an owner the source does not name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.shared import local_peers
from tcphealth.model import (
    Attribution,
    Blame,
    Finding,
    OwnerSource,
    Severity,
    Snapshot,
    Socket,
    SubjectKind,
    Sysctls,
    TcpInfo,
    TcpState,
)
from tests.builders import listener, many, proc_copy_attribution, process, snapshot, sock
from tests.scenario_helpers import snap as scene
from tests.scenario_helpers import sock as end


def only(findings: list[Finding], code: str) -> Finding:
    matching = [f for f in findings if f.code == code]
    assert len(matching) == 1, [f.code for f in findings]
    return matching[0]


OLD_MS = 600_000  # in CLOSE_WAIT ten minutes at least: past any slow close


def held(
    count: int,
    pid: int,
    recv_queue: int | None,
    remote: str = "10.0.0.5",
    port: int = 5432,
    age_ms: int | None = OLD_MS,
) -> list[Socket]:
    return many(
        count,
        lambda i: sock(
            "CLOSE_WAIT",
            f"10.0.0.1:{40000 + i}",
            f"{remote}:{port}",
            pids=(pid,),
            recv_queue=recv_queue,
            send_queue=0,
            inode=1000 + i,
            tcp_info=None if age_ms is None else TcpInfo(last_ack_recv_ms=age_ms),
        ),
    )


def test_receive_queue_zero_is_a_descriptor_leak_blamed_on_the_process() -> None:
    snap = snapshot(held(3120, 812, 0), processes=[process(812, "java")])
    finding = only(diagnose(snap), "close-wait-not-closed")
    assert finding.severity is Severity.CRITICAL  # 3,120 >= 500
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.state is TcpState.CLOSE_WAIT
    assert finding.subject.kind is SubjectKind.PROCESS
    assert (finding.subject.pid, finding.subject.process) == (812, "java")
    assert finding.count == 3120
    assert finding.summary.startswith(
        "pid 812 (java) holds 3,120 connections in CLOSE_WAIT: the peers closed and this "
        "application never did"
    )
    assert "never called close()" in finding.summary
    assert "10.0.0.5:5432 (3,120)" in finding.summary
    assert "ls -l /proc/812/fd | grep -c socket   # descriptors held by sockets" in (
        finding.next_steps
    )
    assert "cat /proc/812/limits   # Max open files: how far the leak can go" in finding.next_steps


def test_one_young_sample_states_what_it_shows_and_does_not_call_it_a_leak() -> None:
    # Three seconds in CLOSE_WAIT: a slow closer looks exactly like this in one sample.
    snap = snapshot(held(30, 812, 0, age_ms=3_000), processes=[process(812, "java")])
    finding = only(diagnose(snap), "close-wait-not-closed")
    assert finding.summary == (
        "pid 812 (java) holds 30 connections in CLOSE_WAIT: the peers closed and this "
        "application has not closed them yet; it read each to end-of-file and has not called "
        "close() yet; all to 10.0.0.5:5432 (30)."
    )
    assert "leak" not in finding.summary
    assert {e.name: e.value for e in finding.evidence}["oldest_at_least_s"] == 3.0
    assert finding.unchecked == (
        "whether this is a leak or an application slow to close: the oldest has been in "
        "CLOSE_WAIT at least 3.0 s, under 60 s, so follow them for longer than 60 s (tcphealth "
        "check --samples 4 --interval 20, or tcphealth watch)",
    )


def test_an_unknown_age_is_not_taken_for_an_old_one() -> None:
    snap = snapshot(held(30, 812, 0, age_ms=None), processes=[process(812, "java")])
    finding = only(diagnose(snap), "close-wait-not-closed")
    assert "never" not in finding.summary
    assert "oldest_at_least_s" not in {e.name for e in finding.evidence}
    assert "how long they have been in CLOSE_WAIT is not known" in finding.unchecked[0]


def test_receive_queue_one_means_the_application_stopped_reading() -> None:
    snap = snapshot(
        held(40, 77, 1, remote="10.9.0.19", port=19000), processes=[process(77, "puma")]
    )
    finding = only(diagnose(snap), "close-wait-not-reading")
    assert finding.severity is Severity.WARNING  # 10 <= 40 < 500
    assert finding.count == 40
    assert finding.subject.pid == 77
    assert "stopped reading" in finding.summary
    assert {e.name: e.value for e in finding.evidence}["close-wait-not-reading"] == 40
    assert any("grep State /proc/77/status" in step for step in finding.next_steps)


def test_receive_queue_over_one_means_unread_data() -> None:
    snap = snapshot(held(12, 5, 83), processes=[process(5, "searchapp")])
    finding = only(diagnose(snap), "close-wait-unread-data")
    assert finding.count == 12
    assert "never read" in finding.summary


def test_unknown_receive_queue_is_said_not_guessed() -> None:
    finding = only(diagnose(snapshot(held(15, 5, None))), "close-wait-held")
    assert "could not be told" in finding.summary


def test_mixed_readings_take_the_dominant_one_and_count_each() -> None:
    snap = snapshot(held(30, 9, 0), held(11, 9, 1, port=6379), processes=[process(9, "app")])
    finding = only(diagnose(snap), "close-wait-not-closed")
    assert finding.count == 41
    evidence = {e.name: e.value for e in finding.evidence}
    assert evidence["close-wait-not-closed"] == 30
    assert evidence["close-wait-not-reading"] == 11
    assert "(30 of them)" in finding.summary
    tops = [e.value for e in finding.evidence if e.name == "top_destination"]
    assert tops == ["10.0.0.5:5432", "10.0.0.5:6379"]


def test_one_finding_per_process_and_forked_holders_share_one() -> None:
    forked = many(
        20,
        lambda i: sock(
            "CLOSE-WAIT", "10.0.0.1:8080", f"10.0.3.9:{50000 + i}", pids=(101, 100), recv_queue=0
        ),
    )
    snap = snapshot(
        forked, held(25, 300, 0), processes=[process(100, "gunicorn"), process(300, "x")]
    )
    findings = [f for f in diagnose(snap) if f.state is TcpState.CLOSE_WAIT]
    assert [(f.subject.pid, f.count) for f in findings] == [(300, 25), (100, 20)]
    shared = findings[1]
    assert shared.summary.startswith("pids 100, 101 (gunicorn) holds 20 connections")
    assert {e.name: e.value for e in shared.evidence}["pids"] == "100, 101"
    # All on one local port: the ss command filters on it.
    assert shared.next_steps[0] == "ss -tnpo state close-wait '( sport = :8080 )'"
    # Clients' ports differ every time, so the peers are counted by host; this host's end is
    # the server's (port 8080), so they are where the connections come from.
    assert shared.summary.endswith("all from 10.0.3.9 (20).")


@pytest.mark.parametrize(
    ("local", "remote", "words"),
    [
        # a client end: an ephemeral port, toward a service port
        (lambda i: f"10.0.0.1:{40000 + i}", lambda i: "10.0.0.5:5432", "all to 10.0.0.5:5432"),
        # a server end: a service port, from clients' ephemeral ports
        (lambda i: "10.0.0.1:8080", lambda i: f"10.0.3.9:{50000 + i}", "all from 10.0.3.9"),
        # a client end toward five servers: the three named are not all of them
        (
            lambda i: f"10.0.0.1:{40000 + i}",
            lambda i: f"10.0.0.{5 + i % 5}:5432",
            "mostly to 10.0.0.5:5432 (4), 10.0.0.6:5432 (4), 10.0.0.7:5432 (4).",
        ),
        # both
        (
            lambda i: f"10.0.0.1:{40000 + i}" if i % 2 else "10.0.0.1:8080",
            lambda i: "10.0.0.5:5432" if i % 2 else f"10.0.3.9:{50000 + i}",
            "mostly with ",
        ),
    ],
)
def test_the_peers_are_where_connections_go_only_for_a_client_s_end(
    local: Callable[[int], str], remote: Callable[[int], str], words: str
) -> None:
    # Before, every summary said "mostly to" its peers, also a server's about its clients;
    # and "mostly" where the peers it names are all there are.
    snap = snapshot(
        many(20, lambda i: sock("CLOSE-WAIT", local(i), remote(i), pids=(100,), recv_queue=0))
    )
    (finding,) = [f for f in diagnose(snap) if f.state is TcpState.CLOSE_WAIT]
    assert f"; {words}" in finding.summary, finding.summary


def age_decides(findings: list[Finding]) -> Finding:
    """The one finding a few CLOSE_WAIT of unknown or lasting age make: INFO, never more."""
    (finding,) = findings
    assert (finding.code, finding.severity) == ("close-wait-age-decides", Severity.INFO)
    return finding


def test_below_the_warning_count_there_is_no_warning() -> None:
    # Nine held ten minutes at least: too few to warn, too old for a slow close.
    snap = snapshot(held(9, 812, 0), processes=[process(812, "java")])
    finding = age_decides(diagnose(snap))
    assert (finding.subject.pid, finding.count, finding.blame) == (
        812,
        9,
        Blame.LOCAL_APPLICATION,
    )
    evidence = {e.name: e.value for e in finding.evidence}
    assert (evidence["lasting"], evidence["oldest_at_least_s"]) == (9, 600.0)
    assert "age_unknown" not in evidence
    assert "waited at least 600 s, past the 60 s a slow close explains" in finding.summary
    assert not finding.unchecked  # the age is known: nothing left to settle
    # Active within the last minute (tcp_info): a close may be a moment away, say nothing.
    young = snapshot(held(9, 812, 0, age_ms=5_000), processes=[process(812, "java")])
    assert diagnose(young) == []


def test_a_few_held_of_unknown_age_say_what_would_settle_it() -> None:
    # A paste's lsof rows: no tcp_info, so one look cannot tell a moment from a leak.
    snap = snapshot(held(2, 21799, None, age_ms=None), processes=[process(21799, "dotnet")])
    finding = age_decides(diagnose(snap))
    assert (finding.subject.pid, finding.count) == (21799, 2)
    assert {e.name: e.value for e in finding.evidence}["age_unknown"] == 2
    assert "the input does not say how long they have waited" in finding.summary
    assert "below the 10 that warn" in finding.summary
    (unchecked,) = finding.unchecked
    assert "not known, and a second look after 60 s settles it" in unchecked
    assert finding.next_steps[0].startswith("ss -tnpo state close-wait | grep -F 'pid=21799,'")
    assert finding.next_steps[1].startswith("tcphealth check --samples 4 --interval 20")


def test_some_young_some_unknown_counts_only_the_unknown() -> None:
    young = held(3, 7, 0, age_ms=1_000)
    unknown = [
        dataclasses.replace(s, inode=9000 + i)
        for i, s in enumerate(held(2, 7, 0, age_ms=None, port=6379))
    ]
    finding = age_decides(diagnose(snapshot(young + unknown, processes=[process(7, "app")])))
    evidence = {e.name: e.value for e in finding.evidence}
    assert (finding.count, evidence["age_unknown"], evidence["active_recently"]) == (2, 2, 3)


def test_thresholds_decide_the_severity() -> None:
    snap = snapshot(held(9, 812, 0))
    strict = dataclasses.replace(Thresholds(), close_wait_warning=2, close_wait_critical=5)
    assert only(diagnose(snap, strict), "close-wait-not-closed").severity is Severity.CRITICAL


def test_longest_idle_from_tcp_info_is_evidence() -> None:
    sockets = [
        dataclasses.replace(s, tcp_info=TcpInfo(last_data_recv_ms=1000 * (i + 1)))
        for i, s in enumerate(held(10, 4, 0))
    ]
    finding = only(diagnose(snapshot(sockets)), "close-wait-not-closed")
    assert {e.name: e.value for e in finding.evidence}["longest_idle_s"] == 10.0


def test_incomplete_attribution_is_listed_as_unchecked() -> None:
    partial = Attribution(attempted=True, processes_scanned=50, processes_forbidden=3)
    finding = only(diagnose(snapshot(held(10, 4, 0), attribution=partial)), "close-wait-not-closed")
    assert any("3 processes were not readable" in u for u in finding.unchecked)


def test_an_unseen_socket_of_another_state_is_not_unchecked_for_a_held_close_wait() -> None:
    # The ownerless listener found on a live host says nothing about who holds these
    # CLOSE_WAIT connections; an unseen CLOSE_WAIT socket might be more of them.
    ownerless = sock("LISTEN", "0.0.0.0:2024", inode=77, owner=OwnerSource.UNSEEN)
    one_unseen = Attribution(attempted=True, processes_scanned=50, sockets_unseen=1)
    finding = only(
        diagnose(snapshot(held(10, 4, 0), ownerless, attribution=one_unseen)),
        "close-wait-not-closed",
    )
    assert finding.unchecked == ()
    unseen_close_wait = sock(
        "CLOSE-WAIT", "10.0.0.1:39999", "10.0.0.5:5432", inode=78, owner=OwnerSource.UNSEEN
    )
    finding = only(
        diagnose(snapshot(held(10, 4, 0), unseen_close_wait, attribution=one_unseen)),
        "close-wait-not-closed",
    )
    assert finding.unchecked == ("1 CLOSE_WAIT socket with a descriptor had no owner we could see",)


def unaccepted(
    count: int, port: int, *, owner: OwnerSource, inode: int | None = None
) -> list[Socket]:
    return many(
        count,
        lambda i: sock(
            "CLOSE-WAIT",
            f"192.168.1.10:{port}",
            f"192.168.1.{50 + i % 3}:{41000 + i}",
            recv_queue=200 + i,
            owner=owner,
            inode=inode,
        ),
    )


def test_unowned_close_wait_on_a_full_listener_blames_the_listener_not_a_leak() -> None:
    snap = snapshot(
        listener("0.0.0.0:8443", 129, 128, pids=(2200,)),
        unaccepted(40, 8443, owner=OwnerSource.LISTENER, inode=0),
        processes=[process(2200, "envoy")],
    )
    finding = only(diagnose(snap), "close-wait-unaccepted")
    assert finding.severity is Severity.CRITICAL
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.subject.kind is SubjectKind.LISTENER
    assert (finding.subject.pid, finding.subject.process) == (2200, "envoy")
    assert finding.subject.endpoint == "0.0.0.0:8443"
    assert finding.count == 40
    assert "not calling accept()" in finding.summary and "not a close() leak" in finding.summary
    assert {e.name: e.value for e in finding.evidence}["recv_queue_bytes"] == "200-239"
    assert not any(f.code == "close-wait-not-closed" for f in diagnose(snap))


def test_unaccepted_on_a_listener_with_room_is_a_warning_by_count() -> None:
    snap = snapshot(
        listener("0.0.0.0:8443", 20, 128, pids=(2200,)),
        unaccepted(12, 8443, owner=OwnerSource.NONE),
    )
    finding = only(diagnose(snap), "close-wait-unaccepted")
    assert finding.severity is Severity.WARNING
    assert finding.count == 12


def test_a_few_unaccepted_on_a_listener_with_room_are_info_their_age_deciding() -> None:
    snap = snapshot(
        listener("0.0.0.0:8443", 3, 128, pids=(2200,)),
        unaccepted(3, 8443, owner=OwnerSource.NONE),
        processes=[process(2200, "api")],
    )
    finding = age_decides(diagnose(snap))
    assert (finding.subject.kind, finding.subject.endpoint, finding.subject.pid) == (
        SubjectKind.LISTENER,
        "0.0.0.0:8443",
        2200,
    )
    assert finding.count == 3
    assert "without being accepted yet" in finding.summary
    assert "nothing ends them until pid 2200 (api) calls accept()" in finding.summary
    assert {e.name: e.value for e in finding.evidence}["close_wait_unaccepted"] == 3
    # Seen live a moment after their clients closed (tcp_info): an accept() may be near.
    young = [
        dataclasses.replace(s, tcp_info=TcpInfo(last_ack_recv_ms=500))
        for s in unaccepted(3, 8443, owner=OwnerSource.NONE)
    ]
    assert diagnose(snapshot(listener("0.0.0.0:8443", 3, 128, pids=(2200,)), young)) == []


def test_unaccepted_with_a_proc_copy_listener_says_the_backlog_was_not_checked() -> None:
    snap = snapshot(
        listener("0.0.0.0:8443", 20, None),
        unaccepted(12, 8443, owner=OwnerSource.UNKNOWN, inode=0),
        attribution=proc_copy_attribution(),
    )
    finding = only(diagnose(snap), "close-wait-unaccepted")
    assert finding.subject.pid is None
    assert finding.subject.endpoint == "0.0.0.0:8443"
    assert any("listen backlog of 0.0.0.0:8443" in u for u in finding.unchecked)
    assert any("which process owns the listener" in u for u in finding.unchecked)


def test_close_wait_with_no_named_owner_is_counted_not_attributed() -> None:
    # A /proc/net/tcp copy: inodes, no owners. Nobody is named; the gap is said.
    sockets = many(
        600,
        lambda i: sock(
            "CLOSE-WAIT", f"10.0.0.1:{30000 + i}", "10.0.0.7:443", inode=5000 + i, recv_queue=1
        ),
    )
    snap = snapshot(sockets, attribution=proc_copy_attribution(), sysctls=Sysctls())
    finding = only(diagnose(snap), "close-wait-owner-unknown")
    assert finding.severity is Severity.CRITICAL
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.subject.kind is SubjectKind.HOST and finding.subject.pid is None
    assert finding.count == 600
    assert {e.name: e.value for e in finding.evidence}["with_inode"] == 600
    assert finding.unchecked == ("which processes hold these sockets: the source lists no owners",)


def test_healthy_established_sockets_give_no_close_wait_finding() -> None:
    # 50 to each of ten servers, what a pool holds: 500 to one server would be a pile
    # (established-piled, tests/test_paste_piles.py), not healthy
    snap = snapshot(
        many(
            500,
            lambda i: sock(
                "ESTAB",
                f"10.0.0.1:{30000 + i}",
                f"10.0.0.{10 + i % 10}:443",
                pids=(1,),
                recv_queue=0,
                send_queue=0,
            ),
        ),
        processes=[process(1, "ok", open_fds=520, soft_limit=65536)],
    )
    assert diagnose(snap) == []


def test_local_peers_are_the_holders_of_the_other_ends_in_the_state_asked() -> None:
    # Two local connections to :6379 whose client ends are in FIN_WAIT2 (one pair repeated,
    # as in two network namespaces, held by two processes), one whose client end is in
    # another state, and one to a remote host.
    server_ends = [
        end("CLOSE_WAIT", "127.0.0.1:6379", "127.0.0.1:41000", 10),
        end("CLOSE_WAIT", "127.0.0.1:6379", "127.0.0.1:41001", 10),
        end("CLOSE_WAIT", "127.0.0.1:6379", "127.0.0.1:41002", 10),
        end("CLOSE_WAIT", "10.0.0.5:6379", "10.9.9.9:41003", 10),
    ]
    client_ends = [
        end("FIN_WAIT2", "127.0.0.1:41000", "127.0.0.1:6379", 21),
        end("FIN_WAIT2", "127.0.0.1:41000", "127.0.0.1:6379", 20),
        end("FIN_WAIT2", "127.0.0.1:41001", "127.0.0.1:6379", 22),
        end("ESTABLISHED", "127.0.0.1:41002", "127.0.0.1:6379", 23),
    ]
    listener = end("LISTEN", "0.0.0.0:6379", "0.0.0.0:0", 10)
    index = SnapshotIndex.build(scene([listener, *server_ends, *client_ends]))
    assert local_peers(index, server_ends, TcpState.FIN_WAIT2) == (20, 21, 22)
    assert local_peers(index, server_ends[2:], TcpState.FIN_WAIT2) == ()
    assert local_peers(index, server_ends[2:], TcpState.ESTABLISHED) == (23,)
    # Asked about the first state again after another: the same answer.
    assert local_peers(index, server_ends[:1], TcpState.FIN_WAIT2) == (20, 21)
    # From the client side: the server's ends share the listening port, told apart by the
    # client's.
    assert local_peers(index, client_ends[2:3], TcpState.CLOSE_WAIT) == (10,)
    assert local_peers(index, client_ends[3:], TcpState.CLOSE_WAIT) == (10,)
    assert local_peers(index, client_ends[3:], TcpState.FIN_WAIT2) == ()


# --- unread data: a fact of one look, from a few sockets -----------------------------------------


def served(count: int, pid: int, recv_queue: int | None, port: int = 8080) -> list[Socket]:
    """Server ends: this host's port ``port``, the clients' ephemeral ports above it."""
    return many(
        count,
        lambda i: sock(
            "CLOSE_WAIT",
            f"172.26.0.66:{port}",
            f"172.26.0.111:{41548 + i}",
            pids=(pid,),
            recv_queue=recv_queue,
            send_queue=0,
            inode=2000 + i,
        ),
    )


def test_a_few_held_with_unread_data_are_a_warning_below_the_count() -> None:
    # Three requests of 124 bytes each, never read, then the clients closed (srs#2346's rows):
    # far below close_wait_warning, but the queue shows the data was neither read nor closed.
    snap = snapshot(served(3, 24276, 125), processes=[process(24276, "srs")])
    finding = only(diagnose(snap), "close-wait-unread-data")
    assert finding.severity is Severity.WARNING
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.subject.pid == 24276
    assert finding.count == 3
    evidence = {e.name: e.value for e in finding.evidence}
    assert evidence["unread_bytes"] == "125"
    # Without an age it claims nothing about time: no "never", no leak.
    assert "they hold data it has not read" in finding.summary
    assert "never" not in finding.summary
    assert any(u.startswith("whether this is a leak") for u in finding.unchecked)


def test_a_few_held_without_unread_data_stay_quiet() -> None:
    # The FIN alone (1) or read to the end (0): a few such sockets are a slow close's moment.
    for queued in (0, 1, None):
        snap = snapshot(served(3, 24276, queued), processes=[process(24276, "srs")])
        assert age_decides(diagnose(snap)).count == 3, queued  # no warning: their age decides


def test_one_socket_with_unread_data_is_under_the_unread_threshold() -> None:
    snap = snapshot(served(1, 24276, 125), processes=[process(24276, "srs")])
    finding = age_decides(diagnose(snap))  # one unread request: no warning, its age decides
    assert (finding.count, finding.subject.pid) == (1, 24276)
    lower = dataclasses.replace(Thresholds(), close_wait_unread_warning=1)
    assert only(diagnose(snap, lower), "close-wait-unread-data").severity is Severity.WARNING


def test_unread_data_decides_the_code_when_it_alone_makes_the_finding() -> None:
    # Five read to the end, two with unread data: the count alone says nothing; the two do.
    snap = snapshot(served(5, 9, 0), served(2, 9, 300, port=6379), processes=[process(9, "app")])
    finding = only(diagnose(snap), "close-wait-unread-data")
    assert finding.count == 7
    evidence = {e.name: e.value for e in finding.evidence}
    assert (evidence["close-wait-unread-data"], evidence["close-wait-not-closed"]) == (2, 5)


def test_a_few_client_ends_with_the_servers_goodbye_unread_stay_quiet() -> None:
    # A desktop's pooled TLS connections the servers closed while idle: 31 bytes (a TLS
    # close_notify) and the FIN, the client's port above the server's. Not requests unread.
    clients = many(
        3,
        lambda i: sock(
            "CLOSE-WAIT", f"192.168.1.221:{54420 + i}", "35.236.87.93:8081", recv_queue=31
        ),
    )
    assert age_decides(diagnose(snapshot(clients))).subject.kind is SubjectKind.HOST
    # held by a process, ten minutes old: no unread-data warning either
    assert age_decides(diagnose(snapshot(held(3, 5, 31)))).subject.pid == 5


def test_a_listener_on_the_port_makes_an_end_the_servers_whatever_the_ports() -> None:
    # Loopback test servers bind an ephemeral port too, maybe above their clients' ports.
    ends = many(
        2,
        lambda i: sock(
            "CLOSE-WAIT", "127.0.0.1:60000", f"127.0.0.1:{40000 + i}", pids=(3,), recv_queue=35
        ),
    )
    assert age_decides(diagnose(snapshot(ends, processes=[process(3, "srv")]))).count == 2
    with_listener = snapshot(ends, listener("127.0.0.1:60000", pids=(3,)))
    assert only(diagnose(with_listener), "close-wait-unread-data").severity is Severity.WARNING


def test_unowned_close_wait_with_unread_data_warns_and_names_both_explanations() -> None:
    # An ss -tan paste (haproxy#136): two rows, no owners, requests of 13 and 59 KB unread,
    # the last ACK 370 s ago.
    sockets = [
        sock(
            "CLOSE-WAIT",
            "1.1.1.1:80",
            f"2.2.2.{2 + i}:{49738 + i}",
            recv_queue=queued,
            send_queue=0,
            tcp_info=TcpInfo(last_ack_recv_ms=age),
        )
        for i, (queued, age) in enumerate(((13340, 369_872), (59419, 122_900)))
    ]
    finding = only(diagnose(snapshot(sockets)), "close-wait-owner-unknown")
    assert finding.severity is Severity.WARNING
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.subject.kind is SubjectKind.HOST
    evidence = {e.name: e.value for e in finding.evidence}
    assert evidence["close-wait-unread-data"] == 2
    assert evidence["unread_bytes"] == "13,340-59,419"
    assert evidence["oldest_at_least_s"] == 369.9
    assert "nobody has read" in finding.summary
    assert finding.summary.endswith("neither read it nor closed them, for at least 370 s.")
    assert any("no process ever accepted them" in u for u in finding.unchecked)


def test_unowned_close_wait_with_the_fin_alone_stays_under_the_count() -> None:
    sockets = many(
        9, lambda i: sock("CLOSE-WAIT", f"10.0.0.1:{40000 + i}", "10.0.0.7:443", recv_queue=1)
    )
    finding = age_decides(diagnose(snapshot(sockets)))
    # No owner, and client ends (ports above the peer's): about the host, not a server port.
    assert (finding.count, finding.subject.kind) == (9, SubjectKind.HOST)


def test_unowned_close_wait_with_unread_data_but_no_age_claims_no_duration() -> None:
    sockets = many(
        9,
        lambda i: sock("CLOSE-WAIT", "172.20.0.1:2040", f"172.20.0.1:{50000 + i}", recv_queue=210),
    )
    finding = only(diagnose(snapshot(sockets)), "close-wait-owner-unknown")
    assert finding.severity is Severity.WARNING
    assert finding.summary.endswith("whoever holds them has neither read it nor closed them.")
    assert "oldest_at_least_s" not in {e.name for e in finding.evidence}


# --- a paste's repeated listings: what stayed, went and came -----------------------------------


def listed_again(snap: Snapshot, *earlier: list[Socket]) -> Snapshot:
    return dataclasses.replace(snap, earlier_listings=tuple(tuple(each) for each in earlier))


def client_ends(ports: range, *, pids: tuple[int, ...] = (), queued: int = 1) -> list[Socket]:
    """This host's client ends toward two servers' port 19000, the server's FIN alone queued."""
    return [
        sock(
            "CLOSE-WAIT",
            f"100.96.253.46:{port}",
            f"172.31.13.{216 + port % 2}:19000",
            pids=pids,
            recv_queue=queued,
            send_queue=0,
        )
        for port in ports
    ]


def test_listings_where_none_closed_and_more_came_pile_up_even_below_the_count() -> None:
    # lsof -p 4981 twice around one more request (mysqljs#47): 1, then 2, the first still there.
    first = held(1, 4981, None, port=3306, age_ms=None)
    latest = held(2, 4981, None, port=3306, age_ms=None)
    snap = listed_again(snapshot(latest, processes=[process(4981, "node")]), first)
    finding = only(diagnose(snap), "close-wait-held")
    assert finding.severity is Severity.WARNING
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.subject.pid == 4981
    evidence = {e.name: e.value for e in finding.evidence}
    assert (evidence["paste_listings"], evidence["closed_between"], evidence["came_between"]) == (
        "1, 2",
        0,
        1,
    )
    assert finding.summary.endswith(
        "The paste lists them 2 times (1, then 2): none of the earlier ones was closed and 1 "
        "more came, so they pile up."
    )
    # Untimed listings prove no age: the leak question stays open.
    assert any(u.startswith("whether this is a leak") for u in finding.unchecked)


def test_the_same_single_socket_listed_twice_is_no_pile() -> None:
    one = held(1, 4981, None, port=3306, age_ms=None)
    snap = listed_again(snapshot(one, processes=[process(4981, "node")]), one)
    assert age_decides(diagnose(snap)).count == 1  # untimed listings give no age


def test_listings_of_another_holder_are_not_compared() -> None:
    theirs = held(1, 77, None, port=3306, age_ms=None)
    latest = held(2, 4981, None, port=3306, age_ms=None)
    snap = listed_again(snapshot(latest, processes=[process(4981, "node")]), theirs)
    assert age_decides(diagnose(snap)).count == 2  # no pile: only their age decides


def test_some_closed_between_listings_takes_back_never_even_when_old() -> None:
    # A server's 30 CLOSE_WAIT, ten minutes old by tcp_info; an earlier listing held 10 others
    # that are gone: the holder does close them, so "never" would be wrong.
    gone = held(10, 812, 0, remote="10.0.0.9")
    snap = listed_again(snapshot(held(30, 812, 0), processes=[process(812, "java")]), gone)
    finding = only(diagnose(snap), "close-wait-not-closed")
    assert "never" not in finding.summary
    assert without_listings_it_would_say(snap, "never")
    assert "of the 10 in the first, 10 were gone by the last" in finding.summary
    assert {e.name: e.value for e in finding.evidence}["closed_between"] == 10


def test_idle_client_ends_replaced_between_listings_are_the_peers_idle_close() -> None:
    # The k8s pod paste: client ends toward port 19000, FIN alone, a pool beside them; of the
    # first listing 6 are gone by the last and 7 new came.
    first = client_ends(range(40000, 40035))
    latest = client_ends(range(40006, 40042))
    pool = [
        sock("ESTAB", f"100.96.253.46:{port}", "172.31.13.216:19000", recv_queue=0)
        for port in range(41000, 41020)
    ]
    snap = listed_again(snapshot(latest, pool, attribution=proc_copy_attribution()), first)
    finding = only(diagnose(snap), "close-wait-peer-idle-close")
    assert finding.severity is Severity.WARNING  # 36 >= close_wait_warning, not lowered
    assert finding.blame is Blame.REMOTE_PEER
    assert finding.state is TcpState.CLOSE_WAIT
    assert finding.subject.kind is SubjectKind.HOST and finding.subject.pid is None
    evidence = {e.name: e.value for e in finding.evidence}
    assert evidence["paste_listings"] == "35, 36"
    assert (evidence["closed_between"], evidence["came_between"]) == (6, 7)
    assert evidence["stayed_in_every_listing"] == 29
    assert evidence["established_to_same_servers"] == 20
    assert "not a leak" in finding.summary and "closed them while they were idle" in finding.summary
    assert finding.next_steps[0].startswith("ss -tno state close-wait '( dport = :19000 )'")
    assert any("how far apart its listings were" in u for u in finding.unchecked)
    assert any("which process holds them" in u for u in finding.unchecked)


def test_idle_client_ends_listed_unchanged_stay_the_holders_matter() -> None:
    same = client_ends(range(40000, 40036))
    snap = listed_again(snapshot(same, attribution=proc_copy_attribution()), same)
    finding = only(diagnose(snap), "close-wait-owner-unknown")
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.summary.endswith("the same ones each time.")


def test_replaced_client_ends_with_unread_replies_are_not_an_idle_close() -> None:
    # Data besides the FIN: the server sent a reply the client never read; not idle.
    first = client_ends(range(40000, 40035), queued=900)
    latest = client_ends(range(40006, 40042), queued=900)
    snap = listed_again(snapshot(latest, attribution=proc_copy_attribution()), first)
    codes = [f.code for f in diagnose(snap)]
    assert "close-wait-peer-idle-close" not in codes
    assert "close-wait-owner-unknown" in codes


def test_replaced_server_ends_are_not_an_idle_close() -> None:
    # The local side is the server (a listener on 8080): clients closed; its own slow close.
    def server_ends(ports: range) -> list[Socket]:
        return [
            sock(
                "CLOSE-WAIT",
                "10.0.0.1:8080",
                f"10.0.0.9:{port}",
                pids=(5,),
                recv_queue=1,
                tcp_info=TcpInfo(last_ack_recv_ms=OLD_MS),  # old: one look alone would say
            )
            for port in ports
        ]

    snap = listed_again(
        snapshot(
            server_ends(range(50006, 50042)),
            listener("0.0.0.0:8080", pids=(5,)),
            processes=[process(5, "srv")],
        ),
        server_ends(range(50000, 50035)),
    )
    finding = only(diagnose(snap), "close-wait-not-reading")
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert "stopped reading" not in finding.summary  # some were closed: no "stopped"
    assert "has not read from them since the peer's FIN arrived" in finding.summary
    assert without_listings_it_would_say(snap, "stopped reading")


def without_listings_it_would_say(snap: Snapshot, claim: str) -> bool:
    """The same look without the earlier listings makes ``claim`` (so the test is not
    vacuous)."""
    alone = dataclasses.replace(snap, earlier_listings=())
    return any(claim in f.summary for f in diagnose(alone))


# --- BSD and macOS count data alone in Recv-Q, not the FIN ---------------------------------------


def on_macos(snap: Snapshot) -> Snapshot:
    return dataclasses.replace(snap, host=dataclasses.replace(snap.host, platform="darwin"))


def test_an_empty_queue_on_macos_does_not_say_the_fin_was_read() -> None:
    # On Linux an empty queue in CLOSE_WAIT is the FIN read (end-of-file); macOS never counts
    # the FIN, so there it says only that no data waits.
    snap = snapshot(held(30, 812, 0), processes=[process(812, "java")])
    assert only(diagnose(snap), "close-wait-not-closed")
    finding = only(diagnose(on_macos(snap)), "close-wait-held")
    assert "end-of-file" not in finding.summary
    assert "could not be told" in finding.summary


def test_one_byte_on_macos_is_data_not_the_fin() -> None:
    snap = snapshot(served(2, 24276, 1), processes=[process(24276, "srs")])
    assert age_decides(diagnose(snap)).count == 2  # Linux: the FIN alone, no warning
    finding = only(diagnose(on_macos(snap)), "close-wait-unread-data")
    assert finding.severity is Severity.WARNING
    assert {e.name: e.value for e in finding.evidence}["unread_bytes"] == "1"
